package nats

// PeakInFlight returns the most messages the sink has had published and
// not yet acknowledged at once.
func (s *Sink) PeakInFlight() int { return s.inFlight.peak() }
