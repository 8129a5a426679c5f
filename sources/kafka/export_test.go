package kafka

import "sort"

// Owned returns the partitions assigned to the source now, as
// "topic/partition", sorted.
func (s *Source) Owned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.owned {
		out = append(out, k.topic+"/"+itoa(k.part))
	}
	sort.Strings(out)
	return out
}

func itoa(p int32) string {
	if p < 10 {
		return string(rune('0' + p))
	}
	return itoa(p/10) + string(rune('0'+p%10))
}

// CursorPosition encodes offsets as the source encodes event positions.
func CursorPosition(o Offsets) []byte {
	var c cursors
	for t, ps := range o {
		for p, n := range ps {
			c.set(t, p, n)
		}
	}
	return c.position()
}

// Group returns the consumer group the source joins.
func (s *Source) Group() string { return s.group }
