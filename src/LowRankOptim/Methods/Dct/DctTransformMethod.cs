using LowRankOptim.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// How the DCT projector computes its products with the s×s basis C: G·C (or Cᵀ·G) at a re-selection and, for
/// <see cref="FastTransformProjection"/>, every projection and back-projection. Saved in checkpoints as <c>sim_type</c>.
/// </summary>
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
    /// <summary>
    /// Makhoul's FFT algorithm at re-selections (as <see cref="FastTransform"/>) <i>and</i> for every projection and
    /// back-projection: R = (G·C)[:, idx] (right) or (Cᵀ·G)[idx, :] (left) from the transform of G, and N·Qᵀ (or Q·N) as
    /// N scattered into s zero columns (rows) at idx followed by the forward orthonormal DCT-II. O(m·n·log s) per call
    /// whatever the rank (the gathered-column products of the other methods cost 2·m·n·r), and the s×s basis is never
    /// built. Computed in float32 (float64 for float64 gradients) in blocks of rows (right) or columns (left) whose
    /// workspace stays under 64 MiB, then cast to the gradient's dtype; equal to <see cref="MatrixProduct"/> up to
    /// float32 rounding (not bit for bit: another trajectory). On a 2-core CPU at s = 4096 it breaks even with the
    /// products at r ≈ 128 and is ≈ 2× faster at r = 256, 4–7× at r = 1024 (docs/benchmarks.md).
    /// </summary>
    FastTransformProjection,
}
