package wire

// OutputWildcards returns the subjects that together match every output the templates
// render (hang, hang-resolved and hang-unresolved), each subject once: when one
// template's wildcard covers another's (--hang-subject hw.{callId} and
// --resolved-subject hw.{teamId} both give hw.*), only the wider is returned, since a
// subscriber to both would receive every output twice and a stream refuses subjects
// that overlap. It is what a subscriber to the outputs subscribes, and what the hang
// stream is created over. The order is that of the templates.
func OutputWildcards(templates ...SubjectTemplate) []string {
	ws := make([]string, len(templates))
	for i, t := range templates {
		ws[i] = t.Wildcard()
	}
	var out []string
	for i, w := range ws {
		covered := false
		for j, v := range ws {
			// Covered by another, or the same as an earlier one.
			if j != i && subjectCovers(v, w) && (!subjectCovers(w, v) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, w)
		}
	}
	return out
}
