"""Challenge 97: quantize new keys and values to int8 and store them into a slot-addressed cache.

Checking (see challenge.html, "Checking"): a slot that ``slot_mapping`` does not name must be
left bit for bit as it was. For a written (slot, head) row with input ``x`` (float16) let
``t = 127 * x / max|x|`` (exact; 0 for an all-zero row). Each stored int8 ``q`` must satisfy
``|q - t| <= 0.5 + BOUNDARY_EPS``: ``round(t)`` everywhere, and either neighbour only within
``BOUNDARY_EPS`` of a halfway point (where float32 division and multiplication by a reciprocal
may round differently). Each stored scale must be within ``SCALE_RTOL`` (relative) of
``max|x| / 127``, and exactly 0 for an all-zero row.
"""

import ctypes
from typing import Any, Dict, List, Optional

import torch

from runner.challenge import ChallengeBase
from runner.check import Comparison, Element, compare

BOUNDARY_EPS = 1e-4     # in units of one quantization step
SCALE_RTOL = 1e-6
QMAX = 127
MAX_KV_HEADS = 64
MIN_HEAD_DIM, MAX_HEAD_DIM = 8, 256
MAX_TOKENS = 32_768
MAX_SLOTS = 1 << 20
MAX_EXAMPLES = 5

CACHE_OF_INPUT = {"k_cache": "key", "v_cache": "value", "k_scale": "key", "v_scale": "value"}


def quantize_rows(x: torch.Tensor):
    """Reference quantization of rows ``x[..., head_dim]`` (float16): (int8 rows, float32 scales).

    scale = max|x| / 127 in float32; q = x / scale rounded half to even, clamped to +-127; an
    all-zero row gets scale 0 and zeros.
    """
    xf = x.to(torch.float32)
    amax = xf.abs().amax(dim=-1)
    scale = amax / QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(xf / safe.unsqueeze(-1)).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, scale


class Challenge(ChallengeBase):
    def __init__(self):
        # atol/rtol describe the scales; the int8 caches use the rounding rule above (see
        # compare_output), and slots not named in slot_mapping are compared bit for bit
        super().__init__(name="INT8 KV-Cache Quantize-on-Store", atol=0.0, rtol=SCALE_RTOL,
                         num_gpus=1, access_tier="free")

    def reference_impl(self, key: torch.Tensor, value: torch.Tensor, slot_mapping: torch.Tensor,
                       k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
                       v_scale: torch.Tensor, N: int, num_kv_heads: int, head_dim: int,
                       num_slots: int):
        assert key.shape == value.shape == (N, num_kv_heads, head_dim)
        assert key.dtype == value.dtype == torch.float16
        assert slot_mapping.shape == (N,) and slot_mapping.dtype == torch.int32
        assert k_cache.shape == v_cache.shape == (num_slots, num_kv_heads, head_dim)
        assert k_cache.dtype == v_cache.dtype == torch.int8
        assert k_scale.shape == v_scale.shape == (num_slots, num_kv_heads)
        assert k_scale.dtype == v_scale.dtype == torch.float32

        keep = slot_mapping >= 0
        slots = slot_mapping[keep].long()
        for src, cache, scales in ((key, k_cache, k_scale), (value, v_cache, v_scale)):
            q, scale = quantize_rows(src[keep])
            cache[slots] = q
            scales[slots] = scale

    def perturb_inputs(self, args: Dict[str, Any], base: Dict[str, Any],
                       generator: torch.Generator) -> None:
        """Every key and value element scaled by its own factor in [0.5, 1.5): each row's
        maximum, so its scale and its int8 codes, change. The slot mapping (unique slots) and
        the cache contents are left alone."""
        for name in ("key", "value"):
            factors = torch.rand(base[name].shape, generator=generator, device=generator.device)
            torch.mul(base[name], factors.add_(0.5).to(base[name].dtype), out=args[name])

    def get_solve_signature(self) -> Dict[str, tuple]:
        return {
            "key": (ctypes.POINTER(ctypes.c_uint16), "in"),      # float16
            "value": (ctypes.POINTER(ctypes.c_uint16), "in"),    # float16
            "slot_mapping": (ctypes.POINTER(ctypes.c_int32), "in"),
            "k_cache": (ctypes.POINTER(ctypes.c_int8), "inout"),
            "v_cache": (ctypes.POINTER(ctypes.c_int8), "inout"),
            "k_scale": (ctypes.POINTER(ctypes.c_float), "inout"),
            "v_scale": (ctypes.POINTER(ctypes.c_float), "inout"),
            "N": (ctypes.c_int, "in"),
            "num_kv_heads": (ctypes.c_int, "in"),
            "head_dim": (ctypes.c_int, "in"),
            "num_slots": (ctypes.c_int, "in"),
        }

    # -- checking ---------------------------------------------------------------------------------
    def compare_output(self, name: str, got: torch.Tensor, expected: torch.Tensor,
                       case: Dict[str, Any]) -> Comparison:
        """The rule stated in challenge.html ("Checking"): slots not named in slot_mapping bit
        for bit; in written rows, int8 values by the rounding rule and scales within SCALE_RTOL
        of max|x| / 127, both measured against exact (float64) quotients.

        A value equal to the reference's passes without being re-derived: the reference obeys
        the rule (tests/test_challenge_97.py checks it on every case), and skipping those keeps
        the check of a 16K-token case fast."""
        if got.shape != expected.shape or got.dtype != expected.dtype:
            return compare(name, got, expected, 0.0, 0.0)  # reports the structural problem
        got, expected = got.detach().cpu(), expected.detach().cpu()
        is_cache = expected.dtype == torch.int8
        slot_mapping = case["slot_mapping"].detach().cpu().long()
        tokens = torch.nonzero(slot_mapping >= 0).reshape(-1)
        num_slots = expected.shape[0]
        token_of_slot = torch.full((num_slots,), -1, dtype=torch.long)
        token_of_slot[slot_mapping[tokens]] = tokens

        def bits(t: torch.Tensor) -> torch.Tensor:
            return t if is_cache else t.view(torch.int32)

        neq = bits(got) != bits(expected)                     # only these values can fail
        rows = torch.nonzero(neq.reshape(num_slots, -1).any(dim=1)).reshape(-1)
        named = token_of_slot[rows] >= 0
        u_rows, w_rows = rows[~named], rows[named]

        # 1. slots not named in slot_mapping: any differing value fails
        n_changed = int(neq[u_rows].sum())
        u_first = torch.nonzero(neq[u_rows[:MAX_EXAMPLES]])[:MAX_EXAMPLES]
        if u_first.numel():
            u_first[:, 0] = u_rows[u_first[:, 0]]

        # 2. written rows: each differing value against the exact quotient of its input
        per_row = neq[0].numel()
        flat = torch.nonzero(neq[w_rows].reshape(-1)).reshape(-1)
        row = w_rows[flat // per_row]
        head_dim = expected.shape[2] if is_cache else 1
        head, j = (flat % per_row) // head_dim, flat % head_dim
        w_idx = torch.stack([row, head, j] if is_cache else [row, head], dim=1)
        token = token_of_slot[row]
        x = case[CACHE_OF_INPUT[name]].detach().cpu()
        amax = x.abs().amax(dim=-1)[token, head].to(torch.float64)   # exact in float16
        g = got[tuple(w_idx.t())].to(torch.float64)
        if is_cache:
            xj = x[token, head, j].to(torch.float64)
            target = torch.where(amax > 0, QMAX * xj / torch.where(amax > 0, amax, 1.0),
                                 torch.zeros_like(xj))
            bad_w = ~((g - target).abs() <= 0.5 + BOUNDARY_EPS)
        else:
            target = amax / QMAX
            bad_w = ~((g - target).abs() <= SCALE_RTOL * target)  # NaN fails; zero row: exactly 0
        n_bad = int(bad_w.sum())

        result = Comparison(name, passed=(n_changed + n_bad == 0), total=expected.numel(),
                            mismatches=n_changed + n_bad)
        wide = torch.float32 if is_cache else torch.float64   # exact for int8 differences
        g_u, e_u = got[u_rows].to(wide), expected[u_rows].to(wide)   # equal values add 0
        errs = [(g_u - e_u).abs(), (g - expected[tuple(w_idx.t())]).abs()]
        refs = [e_u.abs(), expected[tuple(w_idx.t())].to(torch.float64).abs()]
        for err, ref in zip(errs, refs):
            if err.numel():
                err = err.to(torch.float64).nan_to_num(nan=float("inf"))
                result.max_abs_error = max(result.max_abs_error, float(err.max()))
                result.max_rel_error = max(result.max_rel_error, float(
                    (err / ref.to(torch.float64).clamp_min(1e-300)).max()))
        if result.passed:
            return result

        problems: List[str] = []
        examples: List[Element] = []
        if n_changed:
            first = u_first[0].tolist()
            problems.append(
                f"{n_changed} values in {int(neq[u_rows].reshape(len(u_rows), -1).any(1).sum())} "
                f"slots not named in slot_mapping were changed (they must keep their earlier "
                f"contents); first at {first}: got {_fmt(got[tuple(first)])}, was "
                f"{_fmt(expected[tuple(first)])}")
            examples += [_element(i, got, expected) for i in u_first.tolist()]
        if n_bad:
            excess = torch.where(bad_w, (g - target).abs().nan_to_num(nan=float("inf")),
                                 torch.zeros_like(g))
            k = int(torch.argmax(excess))
            at = w_idx[k].tolist()
            if is_cache:
                problems.append(
                    f"{n_bad} written int8 values are not 127 * x / max|x| rounded to nearest "
                    f"(either neighbour passes only within {BOUNDARY_EPS:g} of a halfway point); "
                    f"worst at {at}: got {int(g[k])}, expected {int(expected[tuple(at)])} "
                    f"(127 * x / max|x| = {float(target[k]):.6f})")
            else:
                problems.append(
                    f"{n_bad} written scales differ from max|x| / 127 by more than "
                    f"{SCALE_RTOL:g} relative; worst at {at}: got {_fmt(got[tuple(at)])}, "
                    f"expected {float(target[k]):.9g}")
            worst = _element(at, got, expected)
            examples = [worst] + examples
            examples += [_element(i, got, expected)
                         for i in w_idx[bad_w][:MAX_EXAMPLES].tolist() if i != at]
        result.problem = "; ".join(problems)
        result.examples = examples[:MAX_EXAMPLES]
        result.worst = examples[0]
        return result

    # -- test data ------------------------------------------------------------------------------
    def _case(self, N: int, num_kv_heads: int, head_dim: int, num_slots: int, seed: int, *,
              skip_fraction: float = 0.0, slots: Optional[torch.Tensor] = None,
              x_kind: str = "normal", zero_rows: float = 0.0) -> Dict[str, Any]:
        """A random case drawn on the CPU from ``seed``.

        ``x_kind``: "normal" (N(0, 1)), "outlier" (N(0, 1) plus one huge element per row),
        "wide" (each row N(0, 1) times 10**U(-6, 4), clamped to float16's range), "halves"
        (integers with max |x| = 254, so x / scale lands exactly on halves).
        ``slots``: the slot_mapping (default: distinct random slots, skip_fraction of them -1).
        """
        gen = self.generator(seed)
        shape = (N, num_kv_heads, head_dim)

        def draw():
            if x_kind == "halves":
                x = torch.randint(-253, 254, shape, generator=gen).to(torch.float32)
                pick = torch.randint(0, head_dim, (N, num_kv_heads, 1), generator=gen)
                sign = torch.randint(0, 2, (N, num_kv_heads, 1), generator=gen) * 2 - 1
                x.scatter_(2, pick, (254 * sign).to(torch.float32))
                return x.to(torch.float16)
            x = torch.randn(shape, generator=gen)
            if x_kind == "outlier":
                pick = torch.randint(0, head_dim, (N, num_kv_heads, 1), generator=gen)
                big = (1000 + 59000 * torch.rand((N, num_kv_heads, 1), generator=gen))
                big = big * (torch.randint(0, 2, big.shape, generator=gen) * 2 - 1)
                x.scatter_(2, pick, big)
            elif x_kind == "wide":
                exponent = -6 + 10 * torch.rand((N, num_kv_heads, 1), generator=gen)
                x = (x * 10.0 ** exponent).clamp(-60000, 60000)
            if zero_rows:
                zero = torch.rand((N, num_kv_heads, 1), generator=gen) < zero_rows
                x = x * ~zero
            return x.to(torch.float16)

        key, value = draw(), draw()
        if slots is None:
            slots = torch.randperm(num_slots, generator=gen)[:N].to(torch.int32)
            if skip_fraction:
                skip = torch.rand(N, generator=gen) < skip_fraction
                slots = torch.where(skip, torch.full_like(slots, -1), slots)
        # the caches already hold earlier tokens: random int8 rows over the full range (another
        # quantizer may have stored -128) and positive scales
        k_cache = torch.randint(-128, 128, (num_slots, num_kv_heads, head_dim), generator=gen,
                                dtype=torch.int8)
        v_cache = torch.randint(-128, 128, (num_slots, num_kv_heads, head_dim), generator=gen,
                                dtype=torch.int8)
        k_scale = 0.001 + 0.1 * torch.rand((num_slots, num_kv_heads), generator=gen)
        v_scale = 0.001 + 0.1 * torch.rand((num_slots, num_kv_heads), generator=gen)
        return {
            "key": self.to_device(key), "value": self.to_device(value),
            "slot_mapping": self.to_device(slots.to(torch.int32)),
            "k_cache": self.to_device(k_cache), "v_cache": self.to_device(v_cache),
            "k_scale": self.to_device(k_scale), "v_scale": self.to_device(v_scale),
            "N": N, "num_kv_heads": num_kv_heads, "head_dim": head_dim, "num_slots": num_slots,
        }

    def _prefill_slots(self, gen: torch.Generator, N: int, num_slots: int, block_size: int,
                       padding: int) -> torch.Tensor:
        """A prefill chunk's slot_mapping: sequences of random lengths, each continuing in a
        partly filled block and then taking fresh blocks from a shuffled free list; the last
        ``padding`` entries are -1."""
        free = torch.randperm(num_slots // block_size, generator=gen).tolist()
        out: List[int] = []
        while len(out) < N - padding:
            length = min(int(torch.randint(1, 2049, (1,), generator=gen)), N - padding - len(out))
            offset = int(torch.randint(0, block_size, (1,), generator=gen))  # already filled
            pos = 0
            while pos < length:
                block = free.pop()
                for off in range(offset, block_size):
                    if pos == length:
                        break
                    out.append(block * block_size + off)
                    pos += 1
                offset = 0
        return torch.tensor(out + [-1] * padding, dtype=torch.int32)

    def generate_example_test(self) -> Dict[str, Any]:
        # 3 tokens (the second is padding), 2 heads, head_dim 8, a cache of 4 slots (challenge.html)
        key = torch.tensor([[[0.5, -1.0, 2.0, 0.25, 0.0, -3.0, 1.5, 4.0],
                             [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
                            [[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0],
                             [9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]],
                            [[1.0, 2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0],
                             [2.0, -1.0, 0.5, 6.0, -2.5, 1.0, 0.0, 5.0]]], dtype=torch.float16)
        value = torch.tensor([[[-2.0, 2.0, 1.0, -1.0, 0.5, -0.5, 0.25, 0.0],
                               [127.0, 1.0, -1.0, 63.5, 0.5, -0.5, 64.0, -127.0]],
                              [[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0],
                               [9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]],
                              [[254.0, 1.0, 3.0, -5.0, 0.0, -254.0, 100.0, 2.0],
                               [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]], dtype=torch.float16)
        slot_mapping = torch.tensor([2, -1, 0], dtype=torch.int32)
        k_cache = torch.full((4, 2, 8), 7, dtype=torch.int8)
        v_cache = torch.full((4, 2, 8), -7, dtype=torch.int8)
        k_scale = torch.full((4, 2), 0.5, dtype=torch.float32)
        v_scale = torch.full((4, 2), 0.25, dtype=torch.float32)
        return {
            "key": self.to_device(key), "value": self.to_device(value),
            "slot_mapping": self.to_device(slot_mapping),
            "k_cache": self.to_device(k_cache), "v_cache": self.to_device(v_cache),
            "k_scale": self.to_device(k_scale), "v_scale": self.to_device(v_scale),
            "N": 3, "num_kv_heads": 2, "head_dim": 8, "num_slots": 4,
        }

    def generate_functional_test(self) -> List[Dict[str, Any]]:
        unordered = torch.tensor([7, 3, 5, 1, 6, 0, 4, 2], dtype=torch.int32)
        return [
            self._case(1, 1, 64, 8, seed=1),                              # N = 1
            self._case(6, 2, 32, 16, seed=2,                              # every token skipped
                       slots=torch.full((6,), -1, dtype=torch.int32)),
            self._case(8, 4, 16, 8, seed=3, slots=unordered),             # out of order, all slots
            self._case(3, 2, 16, 1, seed=14,                              # a one-slot cache
                       slots=torch.tensor([-1, 0, -1], dtype=torch.int32)),
            self._case(64, 4, 128, 256, seed=4, skip_fraction=0.4),       # mixed -1 padding
            self._case(48, 8, 128, 96, seed=5, zero_rows=0.3),            # all-zero rows
            self._case(40, 4, 128, 64, seed=6, x_kind="outlier"),         # one huge value per row
            self._case(33, 8, 64, 1000, seed=7),                          # head_dim 64
            self._case(17, 2, 256, 50, seed=8, skip_fraction=0.2),        # head_dim 256
            self._case(12, 64, 128, 40, seed=9),                          # the most heads
            self._case(24, 3, 40, 30_000, seed=10, skip_fraction=0.25),   # sparse slots, d = 40
            self._case(50, 4, 8, 64, seed=11, x_kind="wide", zero_rows=0.1),  # tiny/huge rows, d = 8
            self._case(32, 4, 64, 128, seed=12, x_kind="halves"),         # exact halfway points
            self._case(300, 8, 128, 4096, seed=13, skip_fraction=0.05),   # a small prefill
        ]

    def generate_performance_test(self) -> Dict[str, Any]:
        # a prefill chunk of 16,384 tokens (the last 128 padding) into a 65,536-slot cache
        # (4,096 blocks of 16), 8 KV heads of 128
        N, heads, dim, num_slots = 16_384, 8, 128, 65_536
        slots = self._prefill_slots(self.generator(970), N, num_slots, block_size=16, padding=128)
        return self._case(N, heads, dim, num_slots, seed=97, slots=slots)

    # -- cost model ------------------------------------------------------------------------------
    def bytes_moved(self, test: Dict[str, Any]) -> int:
        """Read slot_mapping and the float16 K and V of tokens that are stored; write their int8
        rows and float32 scales. Skipped tokens need not be read."""
        n = int((test["slot_mapping"] >= 0).sum())
        h, d = test["num_kv_heads"], test["head_dim"]
        return 4 * test["N"] + n * h * (2 * 2 * d + 2 * d + 2 * 4)

    def bytes_written(self, test: Dict[str, Any]) -> int:
        """The int8 rows and float32 scales of the stored tokens (the pool is updated in part)."""
        n = int((test["slot_mapping"] >= 0).sum())
        return n * test["num_kv_heads"] * (2 * test["head_dim"] + 2 * 4)

    def flops(self, test: Dict[str, Any]) -> int:
        """Per stored element: a compare for the row maximum and a multiply or divide."""
        n = int((test["slot_mapping"] >= 0).sum())
        return 2 * 2 * n * test["num_kv_heads"] * test["head_dim"]


def _fmt(value: torch.Tensor) -> str:
    v = value.item()
    return str(v) if isinstance(v, int) else f"{v:.9g}"


def _element(index: List[int], got: torch.Tensor, expected: torch.Tensor) -> Element:
    g, e = float(got[tuple(index)]), float(expected[tuple(index)])
    abs_err = abs(g - e) if g == g else float("inf")
    rel = abs_err / abs(e) if e else (0.0 if abs_err == 0 else float("inf"))
    return Element(index=list(index), got=g, expected=e, abs_error=abs_err, rel_error=rel)
