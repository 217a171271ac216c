package camera

// NewFrame and SkipNewer expose to tests what a Grabber does with its Slot.
func (s *Slot) NewFrame() *Frame   { return s.newFrame() }
func (s *Slot) SkipNewer(n uint64) { s.skipNewer(n) }
