#!/usr/bin/env python3
"""The anchor for bench/attention_bench: PyTorch SDPA (flash and cuDNN backends) on the same
shapes, plus the device-copy bandwidth. Prints "anchor <backend> <shape> <ms> <rate>" lines."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV, D = 32, 8, 128
PREFILL = [("prefill_causal_4k", 4096), ("prefill_causal_16k", 16384), ("prefill_causal_64k", 65536)]
PARTIAL = [(f"partial_q{nq}_{name}", nq, nk) for nq in (1, 16)
           for name, nk in (("32k", 32768), ("128k", 131072), ("1m", 1048576))]
PARTIAL += [("partial_q1_2k", 1, 2048), ("partial_q1_8k", 1, 8192)]


def median_ms(fn, reps):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    import sys
    prefill_only = "--prefill" in sys.argv  # cuDNN on the prefill shapes only
    partial_only = "--partial" in sys.argv  # cuDNN on the partial shapes only
    dev = "cuda"
    x = torch.randn(1 << 30, device=dev, dtype=torch.bfloat16)  # 2 GiB
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), 20)
    print(f"anchor copy device_copy_2GiB {ms:.3f} {2 * x.numel() * 2 / ms / 1e6:.1f} GB/s")
    del x, y
    backends = ((SDPBackend.CUDNN_ATTENTION, "cudnn"), (SDPBackend.FLASH_ATTENTION, "flash"))
    for backend, name in backends[:1] if prefill_only or partial_only else backends:
        for shape, n in [] if partial_only else PREFILL:
            q = torch.randn(1, HQ, n, D, device=dev, dtype=torch.bfloat16)
            k = torch.randn(1, HKV, n, D, device=dev, dtype=torch.bfloat16)
            v = torch.randn(1, HKV, n, D, device=dev, dtype=torch.bfloat16)
            try:
                with sdpa_kernel(backend):
                    ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                                   5 if n >= 16384 else 20)
                flops = 4.0 * n * n * D * HQ / 2
                print(f"anchor {name} {shape} {ms:.3f} {flops / ms / 1e9:.1f} TFLOP/s")
            except RuntimeError as e:
                print(f"anchor {name} {shape} n/a ({str(e).splitlines()[0][:80]})")
            del q, k, v
        for shape, nq, nk in [] if prefill_only else PARTIAL:
            q = torch.randn(1, HQ, nq, D, device=dev, dtype=torch.bfloat16)
            # Short K/V fit in the 50 MB L2: cycle through copies past it, as attention_bench does.
            copies = min(16, (200 << 20) // (2 * HKV * nk * D * 2) + 1)
            kv = [(torch.randn(1, HKV, nk, D, device=dev, dtype=torch.bfloat16),
                   torch.randn(1, HKV, nk, D, device=dev, dtype=torch.bfloat16)) for _ in range(copies)]
            k, v = kv[0]
            turn = [0]

            def step():
                kc, vc = kv[turn[0] % copies]
                turn[0] += 1
                return F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
            try:
                with sdpa_kernel(backend):
                    ms = median_ms(step, 30)
                print(f"anchor {name} {shape} {ms:.3f} {2 * k.numel() * 2 / ms / 1e6:.1f} GB/s")
            except RuntimeError as e:
                print(f"anchor {name} {shape} n/a ({str(e).splitlines()[0][:80]})")
            del q, k, v, kv
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
