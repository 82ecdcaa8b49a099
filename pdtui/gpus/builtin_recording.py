"""The NVML readings of one real NVIDIA H200, built into the package for `--demo`.

A copy of ``shared/fixtures/nvml/nvml_h200.json`` (recorded 2026-11-29, driver 580.159.04,
nvidia-ml-py 13.610) without its torch experiment, kept as Python so it ships with
any install of pdtui (no package-data needed). The demo synthesizes N GPUs from it.
"""

from __future__ import annotations

H200_RECORDING_NAME = "built-in NVIDIA H200 recording"

H200_RECORDING = {'init_s': 0.013953867999997982,
 'driver': '580.159.04',
 'nvml_version': '13.580.159.04',
 'cuda_driver': 13000,
 'count': 1,
 'devices': [{'name': 'NVIDIA H200',
              'uuid': 'GPU-8669f6a0-1f66-2a76-5d6a-7a2af1a78b3c',
              'pci_bus_id': '00000000:00:06.0',
              'mem': {'total': 150754820096, 'used': 644939776, 'free': 150109880320},
              'util': {'gpu': 0, 'memory': 0},
              'temp_c': 41,
              'power_mw': 129766,
              'power_limit_mw': 700000,
              'fan': 'ERR NVMLError_NotSupported: Not Supported',
              'mig_mode': [0, 0],
              'compute_mode': 0,
              'persistence': 1,
              'sm_clock': 1980,
              'ecc_errors': 0,
              'numa_node': 'ERR NVMLError_NotSupported: Not Supported',
              'procs': [],
              'nvlink_states': ['ERR NVMLError_NotSupported: Not Supported'],
              'poll_us_per_gpu': 24.350794999996594}]}
