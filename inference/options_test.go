package inference_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

func TestParseProviders(t *testing.T) {
	tests := []struct {
		in   string
		want []inference.Provider
		err  string
	}{
		{in: "tensorrt,cuda,cpu", want: []inference.Provider{"tensorrt", "cuda", "cpu"}},
		{in: " CPU ", want: []inference.Provider{"cpu"}},
		{in: "cuda, cpu,", want: []inference.Provider{"cuda", "cpu"}},
		{in: "", err: "no execution provider"},
		{in: "gpu", err: `unknown execution provider "gpu"`},
		{in: "cpu,cpu", err: "listed twice"},
	}
	for _, tt := range tests {
		got, err := inference.ParseProviders(tt.in)
		if tt.err != "" {
			require.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestTensorRTProviderOptions(t *testing.T) {
	m, err := inference.DefaultTensorRTOptions().ProviderOptions()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"device_id": "0", "trt_fp16_enable": "1", "trt_int8_enable": "0"}, m)

	m, err = inference.TensorRTOptions{
		DeviceID: 1, FP16: false, INT8: true, INT8CalibrationTable: "/models/calib.flatbuffers",
		EngineCacheDir: "/var/lib/edgeagent/trt", MaxWorkspaceSize: 2 << 30,
	}.ProviderOptions()
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"device_id":                             "1",
		"trt_fp16_enable":                       "0",
		"trt_int8_enable":                       "1",
		"trt_int8_calibration_table_name":       "/models/calib.flatbuffers",
		"trt_int8_use_native_calibration_table": "0",
		"trt_engine_cache_enable":               "1",
		"trt_engine_cache_path":                 "/var/lib/edgeagent/trt",
		"trt_timing_cache_enable":               "1",
		"trt_timing_cache_path":                 "/var/lib/edgeagent/trt",
		"trt_max_workspace_size":                "2147483648",
	}, m)

	m, err = inference.TensorRTOptions{INT8: true, INT8CalibrationTable: "calib.cache", NativeCalibrationTable: true}.ProviderOptions()
	require.NoError(t, err)
	require.Equal(t, "1", m["trt_int8_use_native_calibration_table"])

	for _, bad := range []inference.TensorRTOptions{
		{DeviceID: -1},
		{MaxWorkspaceSize: -5},
		{INT8CalibrationTable: "calib.cache"}, // without INT8
	} {
		_, err := bad.ProviderOptions()
		require.Error(t, err, "%+v", bad)
	}
}

func TestCUDAProviderOptions(t *testing.T) {
	m, err := inference.CUDAOptions{}.ProviderOptions()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"device_id": "0"}, m)
	m, err = inference.CUDAOptions{DeviceID: 2, MemoryLimit: 1 << 30}.ProviderOptions()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"device_id": "2", "gpu_mem_limit": "1073741824"}, m)
	_, err = inference.CUDAOptions{DeviceID: -1}.ProviderOptions()
	require.Error(t, err)
	_, err = inference.CUDAOptions{MemoryLimit: -1}.ProviderOptions()
	require.Error(t, err)
}
