import cupy as cp

# One block per head (blockIdx.x): the head's scores against every dequantized key, their
# softmax, and the weighted sum of the dequantized values, written to output (challenge.html).
attention_kernel = cp.RawKernel(r"""
extern "C" __global__
void attention_kernel(const float* Q, const signed char* K_int8, const signed char* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int seq_len, int head_dim) {
    // your code here
}
""", "attention_kernel")


# Q, K_int8, V_int8, k_scale, v_scale, output are CuPy arrays on the GPU
def solve(Q: cp.ndarray, K_int8: cp.ndarray, V_int8: cp.ndarray, k_scale: cp.ndarray,
          v_scale: cp.ndarray, output: cp.ndarray, num_heads: int, seq_len: int, head_dim: int):
    threads_per_block = 128
    attention_kernel((num_heads,), (threads_per_block,),
                     (Q, K_int8, V_int8, k_scale, v_scale, output, cp.int32(seq_len),
                      cp.int32(head_dim)))
