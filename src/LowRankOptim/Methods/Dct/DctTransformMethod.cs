using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>How the DCT projector computes G·C (or Cᵀ·G) at a re-selection.</summary>
public enum DctTransformMethod
{
    /// <summary>A matrix product with the cached s×s basis: O(m·n·s) per re-selection. The reference's <c>sim_type="matmul"</c>.</summary>
    MatrixProduct,
    /// <summary>
    /// Makhoul's FFT algorithm (<see cref="DctTransform"/>): O(m·n·log s) per re-selection, never multiplying by
    /// the s×s basis. Same basis, indices and projected gradient as <see cref="MatrixProduct"/> (up to float32
    /// rounding); unlike the reference's <c>sim_type="makhoul"</c>, which transforms with the transposed basis.
    /// </summary>
    FastTransform,
}
