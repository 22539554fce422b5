module github.com/hangwatch/hangwatch

go 1.26.0
