using System.ComponentModel;
using System.Runtime.CompilerServices;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// DCT-AdamW (Modoranu et al. 2025, IST-DASLab's <c>DCTAdamW</c>): SVD-free low-rank AdamW. Every 2-D
    /// parameter's gradient is projected onto r columns of the orthonormal DCT-II basis of its smaller
    /// dimension, chosen by the ℓp norm of G·C (re-selected at steps 1 and k mod <paramref name="update_proj_gap"/> = 0);
    /// the state per matrix is the moments and r indices, plus one basis per distinct size shared by all
    /// matrices. AdamW with torch.optim's conventions (ε after bias correction, decay before the update) and, as
    /// the reference, no scale (α = 1). 1-D parameters and matrices with a dimension ≥ <paramref name="max_shape"/>
    /// get plain AdamW.
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="scale">α, multiplies the back-projected update (the reference has none: 1).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options (torch.optim's conventions) with a <see cref="DctProjection"/>.</returns>
    public static LowRankOptions DctAdamW(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0, int rank = 128,
        int update_proj_gap = 1, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, true, AdamConventions.TorchOptim,
            new DctProjection(rank, update_proj_gap, scale, sim_type, ell_norm, max_shape, proj_type), optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>DCT-AdamW over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.DctAdamW(...))</c>; see <see cref="LowRankPresets.DctAdamW"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.DctAdamW(model.parameters(), lr: 1e-3, rank: 256, update_proj_gap: 200, sim_type: DctTransformMethod.FastTransform);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="scale">α, multiplies the back-projected update (the reference has none: 1).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer DctAdamW(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 1, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.DctAdamW(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, sim_type, ell_norm, max_shape, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>DCT-AdamW over a flat parameter list (one group): 1-D parameters and very large matrices get plain AdamW.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="scale">α, multiplies the back-projected update (the reference has none: 1).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer DctAdamW(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 1, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.DctAdamW(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, sim_type, ell_norm, max_shape, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>DCT-AdamW over named parameters (one group): 1-D parameters and very large matrices get plain AdamW.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="scale">α, multiplies the back-projected update (the reference has none: 1).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer DctAdamW(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 1, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.DctAdamW(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, sim_type, ell_norm, max_shape, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>DCT-AdamW over parameter groups, in the order before the presets, with weight_decay second: kept for calls that pass lr and weight_decay by position (only those reach it). Use <see cref="LowRankPresets.DctAdamW"/>'s order or names.</summary>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="positional_weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <returns>The optimizer.</returns>
    [Obsolete("DctAdamW's knobs now come in the order of every factory (lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, sim_type, ell_norm, max_shape); pass them by name.")]
    [EditorBrowsable(EditorBrowsableState.Never)]
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer DctAdamW(
        IEnumerable<LowRankParamGroup> groups, double lr, double positional_weight_decay, int rank = 128, int update_proj_gap = 1,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, double beta1 = 0.9,
        double beta2 = 0.999, double eps = 1e-8, ProjectionType proj_type = ProjectionType.Std) =>
        new(groups, LowRankPresets.DctAdamW(
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weight_decay: positional_weight_decay, rank: rank, update_proj_gap: update_proj_gap,
            proj_type: proj_type, sim_type: sim_type, ell_norm: ell_norm, max_shape: max_shape));

    /// <summary>DCT-AdamW over a flat parameter list, in the order before the presets, with weight_decay second: kept for calls that pass lr and weight_decay by position (only those reach it). Use <see cref="LowRankPresets.DctAdamW"/>'s order or names.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="positional_weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="sim_type">How the products with the DCT basis are computed: <see cref="DctTransformMethod.MatrixProduct"/> (reference), <see cref="DctTransformMethod.FastTransform"/> (FFT at re-selections, same result), or <see cref="DctTransformMethod.FastTransformProjection"/> (FFT also for every projection and back-projection: O(m·n·log s) whatever the rank, no s×s basis; equal up to float32 rounding).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <returns>The optimizer.</returns>
    [Obsolete("DctAdamW's knobs now come in the order of every factory (lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, sim_type, ell_norm, max_shape); pass them by name.")]
    [EditorBrowsable(EditorBrowsableState.Never)]
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer DctAdamW(
        IEnumerable<Parameter> parameters, double lr, double positional_weight_decay, int rank = 128, int update_proj_gap = 1,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000, double beta1 = 0.9,
        double beta2 = 0.999, double eps = 1e-8, ProjectionType proj_type = ProjectionType.Std) =>
        new(OneGroup(parameters), LowRankPresets.DctAdamW(
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weight_decay: positional_weight_decay, rank: rank, update_proj_gap: update_proj_gap,
            proj_type: proj_type, sim_type: sim_type, ell_norm: ell_norm, max_shape: max_shape));
}
