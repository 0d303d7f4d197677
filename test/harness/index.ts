// The netns lab harness shared by tests, the demo and the benchmarks.
export { Lab, LabNode, LabPod, type KubeletLayout, type LabOptions, type PodOptions } from './lab';
export { type ManifestOptions } from './manifests';
export { type ExecOptions, type ExecResult } from './run';
export { cgroup2Root } from './cgroup';
export { curl, startEchoServer, startHttpServer, tcpRequest, type CurlResult, type ServerHandle } from './servers';
