package wire

// This file fits an output into the server's max payload (SPEC §3): no output is ever
// dropped for its size.

// size returns the length of the output as append writes it.
func (o *output) size() int {
	n := len(outPrefix) + digits(o.millis) + len(outType) + len(o.kind.String()) + len(outCall)
	if o.callHead != nil {
		n += len(o.callHead) + len(o.callTail)
	} else {
		n += len(outCallID) + jsonStringLen(o.callID) + 1
	}
	n += len(outAssistant) + valueLen(o.assistant)
	n += len(outMessages) + o.messagesLen()
	n += len(outPhone) + valueLen(o.phone)
	n += len(outCustomer) + valueLen(o.customer)
	n += len(outAnalysis) + valueLen(o.analysis)
	if o.phoneNumber != nil {
		n += len(outPhoneNumber) + len(o.phoneNumber)
	}
	n += len(outHang) + o.hangLen + truncatedLen(o.omitted) + len(outEnd)
	return n
}

func (o *output) messagesLen() int {
	switch {
	case o.messages == nil:
		return 2
	case o.open:
		return 1 + len(o.messages)
	}
	return len(o.messages)
}

// valueLen is the length of a value written as {} when absent.
func valueLen(v []byte) int {
	if v == nil {
		return 2
	}
	return len(v)
}

// truncatedLen is the length of historyTruncated and omittedMessages for n messages
// left out.
func truncatedLen(n int64) int {
	if n <= 0 {
		return 0
	}
	return len(outTruncated) + digits(n)
}

// digits is the length of n in decimal.
func digits(n int64) int {
	d := 1
	if n < 0 {
		d++
		if n < -999999999999999999 {
			return 20
		}
		n = -n
	}
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// fit makes the output fit in limit bytes: it leaves out the oldest messages, then the
// assistant, then everything but the call id and the hang object.
func (o *output) fit(limit int) {
	if o.size() <= limit {
		return
	}
	if o.messages != nil {
		o.dropMessages(limit)
		if o.size() <= limit {
			return
		}
	}
	o.assistant = nil
	if o.size() <= limit {
		return
	}
	o.callHead, o.callTail = nil, nil
	o.phone, o.customer, o.analysis, o.phoneNumber = nil, nil, nil, nil
}

// dropMessages leaves out the fewest leading messages of the history array that make
// the output fit in limit bytes, or all of them.
func (o *output) dropMessages(limit int) {
	hist := o.messages
	base := o.size() - len(hist) - truncatedLen(o.omitted)
	var k int64 // the elements before the one at s
	start := -1
	elements(hist, 0, func(s int) bool {
		// Kept: "[", then from s to the end of the array.
		if k > 0 && base+1+len(hist)-s+truncatedLen(o.omitted+k) <= limit {
			start = s
			return false
		}
		k++
		return true
	})
	o.omitted += k
	if start < 0 {
		o.messages = nil // none fits
		return
	}
	o.messages, o.open = hist[start:], true
}
