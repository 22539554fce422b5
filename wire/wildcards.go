package wire

// OutputWildcards returns the subjects that together match every hang and hang-resolved
// the two templates render, each subject once: when one template's wildcard covers the
// other's (--hang-subject hw.{callId} and --resolved-subject hw.{teamId} both give hw.*),
// only the wider is returned, since a subscriber to both would receive every output
// twice and a stream refuses subjects that overlap. It is what a subscriber to the
// outputs subscribes, and what the hang stream is created over.
func OutputWildcards(hang, resolved SubjectTemplate) []string {
	h, r := hang.Wildcard(), resolved.Wildcard()
	switch {
	case subjectCovers(h, r):
		return []string{h}
	case subjectCovers(r, h):
		return []string{r}
	}
	return []string{h, r}
}
