using System.ComponentModel;
using System.Runtime.CompilerServices;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// Online Subspace Descent with AdamW (Liang et al. 2024, <c>proj_type="continuous"</c>): GaLore-AdamW whose
    /// projection P is initialized by one SVD and then, instead of being recomputed, takes one step of its own
    /// optimizer per weight step on the online-PCA loss ‖Ĝ·PᵀP − Ĝ‖² (Ĝ = G/‖G‖), with step size
    /// (1/<paramref name="update_proj_gap"/>)·(η_k/η_0). Defaults follow the reference: the weights use
    /// galore_torch's AdamW (ε = 1e-6, decay after the update); P uses torch.optim.AdamW's defaults with
    /// weight decay 0.01.
    /// </summary>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options with an <see cref="OnlinePcaProjection"/>.</returns>
    public static LowRankOptions OnlineSubspaceDescent(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int rank = 128,
        int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std, IUpdateRuleConfig? p_optimizer = null,
        double p_weight_decay = 0.01, bool correct_bias = true, AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions,
            new OnlinePcaProjection(rank, update_proj_gap, scale, proj_type, BasisRule: p_optimizer, BasisWeightDecay: p_weight_decay), optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>Online Subspace Descent over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.OnlineSubspaceDescent(...))</c>; see <see cref="LowRankPresets.OnlineSubspaceDescent"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.OnlineSubspaceDescent(LowRank.SplitParameters(model), lr: 0.01, rank: 128, update_proj_gap: 200, p_weight_decay: 0.01);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.OnlineSubspaceDescent(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, p_optimizer, p_weight_decay, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>Online Subspace Descent over a flat parameter list (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.OnlineSubspaceDescent(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, p_optimizer, p_weight_decay, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>Online Subspace Descent over named parameters (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.OnlineSubspaceDescent(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, p_optimizer, p_weight_decay, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>Online Subspace Descent over parameter groups, in the order before the presets, with correct_bias and conventions before p_optimizer and p_weight_decay: kept for positional callers. Use <see cref="LowRankPresets.OnlineSubspaceDescent"/>'s order or names.</summary>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <returns>The optimizer.</returns>
    [Obsolete("OnlineSubspaceDescent's knobs now come in the order of every factory (..., proj_type, p_optimizer, p_weight_decay, correct_bias, conventions); pass them by name.")]
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        bool correct_bias = true, AdamConventions conventions = AdamConventions.GaLoreReference, IUpdateRuleConfig? p_optimizer = null,
        double p_weight_decay = 0.01) =>
        new(groups, LowRankPresets.OnlineSubspaceDescent(
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weight_decay: weight_decay, rank: rank, update_proj_gap: update_proj_gap, scale: scale,
            proj_type: proj_type, p_optimizer: p_optimizer, p_weight_decay: p_weight_decay, correct_bias: correct_bias, conventions: conventions));

    /// <summary>Online Subspace Descent over a flat parameter list, in the order before the presets, with correct_bias and conventions before p_optimizer and p_weight_decay: kept for positional callers. Use <see cref="LowRankPresets.OnlineSubspaceDescent"/>'s order or names.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    /// <returns>The optimizer.</returns>
    [Obsolete("OnlineSubspaceDescent's knobs now come in the order of every factory (..., proj_type, p_optimizer, p_weight_decay, correct_bias, conventions); pass them by name.")]
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01) =>
        new(OneGroup(parameters), LowRankPresets.OnlineSubspaceDescent(
            lr: lr, beta1: beta1, beta2: beta2, eps: eps, weight_decay: weight_decay, rank: rank, update_proj_gap: update_proj_gap, scale: scale,
            proj_type: proj_type, p_optimizer: p_optimizer, p_weight_decay: p_weight_decay, correct_bias: correct_bias, conventions: conventions));
}
