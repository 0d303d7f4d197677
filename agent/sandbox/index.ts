// The sandbox (the netns lab): pods as network namespaces + cgroups, nodes as namespaces on a bridge. Part of the product (`weft demo` builds one); the tests and benchmarks use it too.
export { Lab, LabNode, LabPod, type KubeletLayout, type LabOptions, type NodeOptions, type PodOptions } from './lab';
export { type ManifestOptions } from './manifests';
export { type ExecOptions, type ExecResult } from './run';
export { cgroup2Root } from './cgroup';
export { curl, startEchoServer, startHttpServer, tcpRequest, type CurlResult, type ServerHandle } from './servers';
export { BRIDGE, WIRINGS, type Wiring } from './addresses';
