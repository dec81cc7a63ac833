using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// GaLore with AdamW (Zhao et al. 2024): every 2-D parameter's gradient is projected onto its top-r
    /// singular subspace, refreshed by SVD every <paramref name="update_proj_gap"/> steps; Adam runs there;
    /// the update is projected back and scaled by <paramref name="scale"/>. Other tensors get plain AdamW.
    /// Defaults follow galore_torch's <c>AdamW</c> (ε = 1e-6, weight decay 0, ε on the uncorrected √v, decay after
    /// the update) and the paper (rank 128, T = 200, α = 0.25); <c>projector: GaLoreProjector.RandomizedSvd</c>
    /// estimates the subspace by randomized subspace iteration instead (as GaLore+ and GaLore 2).
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options with an <see cref="SvdProjection"/> or a <see cref="RandomizedSvdProjection"/>.</returns>
    public static LowRankOptions GaLore(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int rank = 128,
        int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null,
        int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions,
            GaLoreProjection(rank, update_proj_gap, scale, proj_type, projector, oversampling, power_iterations, seed), optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>GaLore with AdamW over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.GaLore(...))</c>; see <see cref="LowRankPresets.GaLore"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 128, update_proj_gap: 200, scale: 0.25);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLore(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        bool correct_bias = true, AdamConventions conventions = AdamConventions.GaLoreReference, GaLoreProjector projector = GaLoreProjector.Svd,
        int? oversampling = null, int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.GaLore(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, correct_bias, conventions, projector, oversampling,
            power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore with AdamW over a flat parameter list (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLore(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null,
        int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLore(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, correct_bias, conventions, projector, oversampling,
            power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore with AdamW over named parameters (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLore(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        bool correct_bias = true, AdamConventions conventions = AdamConventions.GaLoreReference, GaLoreProjector projector = GaLoreProjector.Svd,
        int? oversampling = null, int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLore(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, correct_bias, conventions, projector, oversampling,
            power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));
}
