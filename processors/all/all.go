package all

import (
	"edgeagent.dev"
	"edgeagent.dev/processors"
)

// Registry returns a new registry holding the spec of every built-in
// processor type.
func Registry() *edgeagent.Registry {
	r := edgeagent.NewRegistry()
	r.MustRegister(
		processors.ApplyONNXModelSpec(),
		processors.CaptureFrameSpec(),
		processors.CompressContentSpec(),
		processors.ConsumeMQTTSpec(),
		processors.ConsumePulsarSpec(),
		processors.GenerateFlowFileSpec(),
		processors.GetDeviceStatsSpec(),
		processors.GetEnvironmentalSensorSpec(),
		processors.GetFileSpec(),
		processors.LogAttributeSpec(),
		processors.MergeContentSpec(),
		processors.MotionDetectorSpec(),
		processors.PublishMQTTSpec(),
		processors.PublishPulsarSpec(),
		processors.PutFileSpec(),
		processors.ReadGPIOSpec(),
		processors.RouteOnAttributeSpec(),
		processors.UpdateAttributeSpec(),
	)
	return r
}
