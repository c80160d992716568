"""Where is the memory floor of a read-heavy case? Issue 26's targets come from the case floor
of `runner/devices.py` (the faster of the read probe and a device copy of the same bytes, read
half, write half). On the H100 the copy wins for 96's 66 MiB (21.7 us against the read probe's
25.8 us), which is odd: a copy moves as many bytes and mixes directions. One explanation is
that the copy's writes end in L2 as dirty lines that the end event does not wait for (the
write-back is billed to whatever runs next); the other is that the read probe is a poor read
kernel. This benchmark tells them apart on the device, in one run:

- read kernels over the same bytes: the harness's Triton probe, Triton variants (programs per
  SM, block, unroll, warps, cache hints) and, with CuPy, CUDA grid-stride kernels (16-byte
  loads, unroll, blocks per SM, the L2::256B prefetch hint, streaming loads);
- the copy as the floor times it, and the copy with its write-back billed: the same copy
  followed by the read flush, minus the read flush alone on a clean L2 (both timed with
  events around them);

    python benchmarks/floor_probes.py --mib 66 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from runner import probe  # noqa: E402

REPEATS = 31

CUDA_READ = r"""
extern "C" __global__ void read16(const uint4* __restrict__ src, long long n16,
                                  unsigned int* __restrict__ sink) {
    unsigned int acc = 0u;
    const long long stride = (long long)gridDim.x * blockDim.x * UNROLL;
    for (long long i = (long long)blockIdx.x * blockDim.x * UNROLL + threadIdx.x; i < n16;
         i += stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const long long j = i + (long long)u * blockDim.x;
            if (j < n16) {
#if HINT == 1
                asm volatile("ld.global.nc.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                    : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(src + j));
#elif HINT == 2
                v[u] = __ldcs(src + j);
#else
                v[u] = __ldg(src + j);
#endif
            } else {
                v[u] = make_uint4(0u, 0u, 0u, 0u);
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    sink[(long long)blockIdx.x * blockDim.x + threadIdx.x] = acc;
}
"""
# (name, threads, blocks per SM, unroll, hint): hint 0 ld.global.nc, 1 +L2::256B, 2 streaming
CUDA_VARIANTS = [
    ("cuda t256 b8 u4", 256, 8, 4, 0),
    ("cuda t256 b8 u8", 256, 8, 8, 0),
    ("cuda t512 b4 u4", 512, 4, 4, 0),
    ("cuda t1024 b2 u4", 1024, 2, 4, 0),
    ("cuda t256 b8 u4 L2::256B", 256, 8, 4, 1),
    ("cuda t256 b8 u8 L2::256B", 256, 8, 8, 1),
    ("cuda t256 b8 u4 streaming", 256, 8, 4, 2),
    ("cuda t256 b4 u8", 256, 4, 8, 0),
    ("cuda t128 b16 u4", 128, 16, 4, 0),
]
# (name, programs per SM, block words, unroll, warps, cache modifier)
TRITON_VARIANTS = [
    ("triton pps8 b1024 u4 w8 (probe)", 8, 1024, 4, 8, ""),
    ("triton pps4 b2048 u4 w8", 4, 2048, 4, 8, ""),
    ("triton pps8 b1024 u8 w8", 8, 1024, 8, 8, ""),
    ("triton pps16 b512 u4 w4", 16, 512, 4, 4, ""),
    ("triton pps8 b1024 u4 w8 .cg", 8, 1024, 4, 8, ".cg"),
]


def median_us(run: Callable[[], None], flush: Callable[[], None]) -> float:
    return probe.median_ms(run, flush, REPEATS) * 1e3


def triton_reads(src: torch.Tensor, sms: int):
    read = probe.read_kernel()
    words = src.numel()
    for name, pps, block, unroll, warps, cache in TRITON_VARIANTS:
        grid = (max(1, min(sms * pps, -(-words // (block * unroll)))),)
        sink = torch.empty(grid[0] * block, dtype=torch.int32, device=src.device)

        def run(grid=grid, sink=sink, block=block, unroll=unroll, warps=warps, cache=cache):
            read[grid](src, src, sink, words, 0, words, BLOCK=block, UNROLL=unroll, CACHE=cache,
                       num_warps=warps)
        yield name, run


def cuda_reads(src: torch.Tensor, sms: int):
    try:
        import cupy
    except ImportError:
        print("no CuPy: the CUDA read kernels are left out", flush=True)
        return
    n16 = src.numel() * src.element_size() // 16
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    src_c = cupy.asarray(src)
    for name, threads, per_sm, unroll, hint in CUDA_VARIANTS:
        kernel = cupy.RawKernel(CUDA_READ, "read16",
                                options=(f"-DUNROLL={unroll}", f"-DHINT={hint}"))
        blocks = max(1, min(sms * per_sm, -(-n16 // (threads * unroll))))
        sink = cupy.empty(blocks * threads, dtype=cupy.uint32)

        def run(kernel=kernel, blocks=blocks, threads=threads, sink=sink):
            with stream:
                kernel((blocks,), (threads,), (src_c, cupy.int64(n16), sink))
        yield name, run


def copy_rows(nbytes: int, device: torch.device, flush: Callable[[], None]) -> List[Dict]:
    """The copy as the floor times it, and the same copy with the write-back of its dirty lines
    billed (the copy and then the read flush, minus the read flush alone on a clean L2)."""
    src = torch.randint(0, 255, (nbytes // 2,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = lambda: dst.copy_(src)  # noqa: E731
    copy()
    plain = median_us(copy, flush)
    both = median_us(lambda: (copy(), flush()), flush)
    flush_alone = median_us(flush, flush)
    return [{"name": "copy (the case floor's copy probe)", "us": plain},
            {"name": "copy, write-back billed (copy+flush - flush)", "us": both - flush_alone,
             "copy_then_flush_us": both, "flush_alone_us": flush_alone}]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=66.0, help="bytes to read (96's perf case: 66)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    nbytes = int(args.mib * 2**20) // 16 * 16
    flush = probe.read_flush(device, 2 * probe.l2_bytes(device))
    src = torch.randint(-2**31, 2**31 - 1, (nbytes // 4,), dtype=torch.int32, device=device)
    gpu = torch.cuda.get_device_name(device)
    print(f"{gpu}, {nbytes / 2**20:.1f} MiB, L2 flushed by reading, median of {REPEATS}", flush=True)
    rows: List[Dict] = []

    def add(row: Dict) -> None:
        row["gbps"] = nbytes / (row["us"] / 1e6) / 1e9
        rows.append(row)
        print(f"  {row['name']:48s} {row['us']:8.2f} us  {row['gbps']:7.0f} GB/s", flush=True)

    add({"name": "harness read floor (runner.probe.read_floor_ms)",
         "us": probe.read_floor_ms(device, nbytes) * 1e3})
    for share, what in ((0.0003, "96's share written"), (0.35, "97's share"), (0.5, "half")):
        add({"name": f"harness read-write probe, {what}",
             "us": probe.mixed_floor_ms(device, nbytes, int(share * nbytes)) * 1e3})
    for name, run in triton_reads(src, sms):
        run()
        add({"name": name, "us": median_us(run, flush)})
    for name, run in cuda_reads(src, sms):
        run()
        add({"name": name, "us": median_us(run, flush)})
    for row in copy_rows(nbytes, device, flush):
        add(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floor_probes.json").write_text(json.dumps(
        {"device": gpu, "bytes": nbytes, "repeats": REPEATS, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
