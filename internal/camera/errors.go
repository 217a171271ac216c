package camera

import "errors"

var (
	// ErrEnded is returned by Slot.Take when the source ended (a video file
	// or image directory was read to its end without loop, or the capture
	// stopped) and every frame has been taken.
	ErrEnded = errors.New("frame source ended")
	// ErrLost is returned by Capture.Read when a live source stopped
	// delivering frames (a camera unplugged, a stream dropped).
	ErrLost = errors.New("frame source lost")
	// ErrInvalidSource is returned by ParseSource for a source string it
	// cannot use.
	ErrInvalidSource = errors.New("invalid frame source")
)
