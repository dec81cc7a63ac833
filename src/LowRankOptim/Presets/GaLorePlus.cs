using System.ComponentModel;
using System.Runtime.CompilerServices;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// GaLore+ with AdamW (Liao et al. 2024; design in <c>docs/algorithms/galore-plus.md</c>): GaLore whose bases
    /// come from randomized subspace iteration; attention weights (groups whose <see cref="GaLorePlusProjection"/>
    /// has <see cref="GaLorePlusProjection.Heads"/>, see <see cref="LowRank.HeadGroups"/>) estimate the basis from one
    /// seeded-random head's gradient block and share it across heads; optionally a sparse residual with its own
    /// Adam moments (<paramref name="residual_density"/> &gt; 0). The preset's projection has no heads (ordinary
    /// weights). Defaults: galore_torch's AdamW conventions and GaLore's rank, T and α.
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options with a <see cref="GaLorePlusProjection"/> without heads.</returns>
    public static LowRankOptions GaLorePlus(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int rank = 128,
        int update_proj_gap = 200, double scale = 0.25, int oversampling = 8, int power_iterations = 2, long seed = 0,
        CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions,
            new GaLorePlusProjection(rank, update_proj_gap, scale, oversampling, power_iterations, seed, null, cross_head,
                residual_density, residual_warmup, residual_reestimate, residual_scale), optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>GaLore+ with AdamW over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.GaLorePlus(...))</c>; see <see cref="LowRankPresets.GaLorePlus"/>.</summary>
    /// <example><code>
    /// // The head layout of each attention projection by module name (8 heads; q/k/v rows, o columns), null for the rest.
    /// AttentionHeads? HeadsOf(string name) =>
    ///     name.EndsWith(".q_proj") || name.EndsWith(".k_proj") || name.EndsWith(".v_proj") ? AttentionHeads.QueryKeyValue(8)
    ///     : name.EndsWith(".o_proj") ? AttentionHeads.Output(8) : null;
    /// var groups = LowRank.HeadGroups(model, HeadsOf, new GaLorePlusProjection(Rank: 128, ResidualDensity: 0.01));
    /// var opt = LowRank.GaLorePlus(groups, lr: 0.01, rank: 128, residual_density: 0.01);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLorePlus(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, int oversampling = 8, int power_iterations = 2,
        long seed = 0, CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.GaLorePlus(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, oversampling, power_iterations, seed, cross_head, residual_density,
            residual_warmup, residual_reestimate, residual_scale, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore+ with AdamW over a flat parameter list (one group): every 2-D parameter is projected as an ordinary weight (no heads).</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLorePlus(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, int oversampling = 8, int power_iterations = 2, long seed = 0,
        CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLorePlus(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, oversampling, power_iterations, seed, cross_head, residual_density,
            residual_warmup, residual_reestimate, residual_scale, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore+ with AdamW over named parameters (one group): every 2-D parameter is projected as an ordinary weight (no heads).</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLorePlus(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25, int oversampling = 8, int power_iterations = 2,
        long seed = 0, CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLorePlus(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, oversampling, power_iterations, seed, cross_head, residual_density,
            residual_warmup, residual_reestimate, residual_scale, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>
    /// GaLore+ over a model: its <see cref="Linear"/> weights (those <paramref name="include"/> accepts) are
    /// projected, attention weights with the head layout <paramref name="heads_of"/> gives for their module name,
    /// everything else is trained in the full space: <see cref="HeadGroups"/> with the preset's projection.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="heads_of">The head layout of a Linear module by name (null: not an attention projection).</param>
    /// <param name="include">Which Linear modules are projected (all when null).</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLorePlus(
        TorchSharp.torch.nn.Module model, Func<string, AttentionHeads?> heads_of, Func<string, bool>? include = null, double lr = 1e-3,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200,
        double scale = 0.25, int oversampling = 8, int power_iterations = 2, long seed = 0,
        CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(heads_of);
        var options = LowRankPresets.GaLorePlus(
            lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, oversampling, power_iterations, seed, cross_head, residual_density,
            residual_warmup, residual_reestimate, residual_scale, correct_bias, conventions, optim_bits, bf16_stochastic_round, block_size);
        return new(HeadGroups(model, heads_of, (GaLorePlusProjection)options.Projection!, include), options);
    }

    /// <summary>GaLore+ over a model, in the order before the presets (weight_decay right after lr, no betas, eps or conventions): kept for calls that pass include, lr and weight_decay by position (only those reach it). Use the other overload's order or names.</summary>
    /// <param name="model">The model.</param>
    /// <param name="heads_of">The head layout of a Linear module by name (null: not an attention projection).</param>
    /// <param name="include">Which Linear modules are projected (all when null).</param>
    /// <param name="lr">η.</param>
    /// <param name="positional_weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="oversampling">p, extra sketch columns of randomized subspace iteration.</param>
    /// <param name="power_iterations">q, its power iterations.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared: on the model dimension (default) or per head block.</param>
    /// <param name="residual_density">ρ in [0, 1], the fraction of entries with sparse residual moments (0: off).</param>
    /// <param name="residual_warmup">S_w, steps of residual accumulation before the entries are chosen.</param>
    /// <param name="residual_reestimate">Re-choose the entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e, the scale of the sparse residual update.</param>
    /// <returns>The optimizer.</returns>
    [Obsolete("GaLorePlus over a model now takes every knob in the order of every factory (lr, beta1, beta2, eps, weight_decay, rank, ...); pass them by name.")]
    [EditorBrowsable(EditorBrowsableState.Never)]
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer GaLorePlus(
        TorchSharp.torch.nn.Module model, Func<string, AttentionHeads?> heads_of, Func<string, bool>? include, double lr,
        double positional_weight_decay, int rank = 128, int update_proj_gap = 200, double scale = 0.25, int oversampling = 8, int power_iterations = 2,
        long seed = 0, CrossHeadReading cross_head = CrossHeadReading.SharedLongSide, double residual_density = 0.0, int residual_warmup = 200,
        bool residual_reestimate = false, double residual_scale = 1.0) =>
        GaLorePlus(model, heads_of, include,
            lr: lr, weight_decay: positional_weight_decay, rank: rank, update_proj_gap: update_proj_gap, scale: scale, oversampling: oversampling,
            power_iterations: power_iterations, seed: seed, cross_head: cross_head, residual_density: residual_density,
            residual_warmup: residual_warmup, residual_reestimate: residual_reestimate, residual_scale: residual_scale);
}
