using System.Runtime.CompilerServices;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// GaLore with Adafactor (galore_torch's <c>Adafactor</c>, a copy of Hugging Face's): factored second
    /// moment in the subspace, update clipping, relative step size. Defaults are Hugging Face's
    /// (relative_step and scale_parameter on, lr unset); pass <paramref name="lr"/> with
    /// <c>relative_step: false</c> for a fixed rate, as GaLore's training script does. <paramref name="projector"/>
    /// (with <paramref name="oversampling"/>, <paramref name="power_iterations"/>, <paramref name="seed"/>) selects
    /// randomized subspace iteration instead of the exact SVD, as in <see cref="GaLore"/>. Weight decay is decoupled
    /// and applied before the update.
    /// <para>
    /// Learning rates: with the defaults (<paramref name="relative_step"/> and <paramref name="scale_parameter"/> true)
    /// the step size is min(1e-2, 1/√k)·max(ε2, RMS(W)), set by the step count and the weights' scale: there is no lr
    /// to compare with AdamW's, and a scheduler has nothing to scale. To compare with AdamW or to schedule, pass
    /// <paramref name="lr"/> with <c>relative_step: false, scale_parameter: false</c>; even then the update is clipped
    /// to RMS ≤ <paramref name="clip_threshold"/> and, as for GaLore, projected updates are scaled by α.
    /// </para>
    /// </summary>
    /// <param name="lr">η: null with <paramref name="relative_step"/> (the default), required without it.</param>
    /// <param name="eps1">ε1 &gt; 0, added to g².</param>
    /// <param name="eps2">ε2 ≥ 0, lower bound of the parameter scale RMS(W) (with <paramref name="scale_parameter"/>).</param>
    /// <param name="clip_threshold">d &gt; 0: the update is divided by max(1, RMS(update)/d).</param>
    /// <param name="decay_rate">c &lt; 0: β2,k = 1 − kᶜ.</param>
    /// <param name="beta1">Momentum β1 in [0, 1), or null for none (no first moment).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update.</param>
    /// <param name="scale_parameter">Multiply the step size by max(ε2, RMS(W)).</param>
    /// <param name="relative_step">Use the step size min(1e-2, 1/√k) instead of <paramref name="lr"/>.</param>
    /// <param name="warmup_init">With <paramref name="relative_step"/>: the step size grows as 1e-6·k.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the momentum is stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; needs <paramref name="beta1"/> (without it there is no moment to compress). For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adafactor options (learning rate 0 under <paramref name="relative_step"/>) with an <see cref="SvdProjection"/> or a <see cref="RandomizedSvdProjection"/>.</returns>
    public static LowRankOptions GaLoreAdafactor(
        double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3, double clip_threshold = 1.0, double decay_rate = -0.8, double? beta1 = null,
        double weight_decay = 0.0, bool scale_parameter = true, bool relative_step = true, bool warmup_init = false, int rank = 128,
        int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std, GaLoreProjector projector = GaLoreProjector.Svd,
        int? oversampling = null, int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0)
    {
        if (relative_step && lr is not null)
            throw new ArgumentException($"lr = {lr} cannot be combined with relative_step = true; leave lr null or pass relative_step: false.", nameof(lr));
        if (!relative_step && lr is null)
            throw new ArgumentException("lr is required when relative_step = false.", nameof(lr));
        return Validated(new LowRankOptions
        {
            LearningRate = lr ?? 0.0,
            WeightDecay = weight_decay,
            DecayOrder = WeightDecayOrder.BeforeUpdate,
            Projection = GaLoreProjection(rank, update_proj_gap, scale, proj_type, projector, oversampling, power_iterations, seed),
            Rule = new AdafactorConfig(beta1, eps1, eps2, clip_threshold, decay_rate, relative_step, scale_parameter, warmup_init),
            MomentStorage = Storage(optim_bits, block_size),
            WeightRounding = Rounding(bf16_stochastic_round),
        });
    }
}

public static partial class LowRank
{
    /// <summary>
    /// GaLore with Adafactor over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.GaLoreAdafactor(...))</c>;
    /// see <see cref="LowRankPresets.GaLoreAdafactor"/>. Its defaults (relative_step, scale_parameter) derive the step
    /// size from the step count and RMS(W), so its lr is not comparable with AdamW's: pass <c>lr</c> with
    /// <c>relative_step: false, scale_parameter: false</c> for that.
    /// </summary>
    /// <example><code>
    /// var opt = LowRank.GaLoreAdafactor(LowRank.SplitParameters(model), lr: 0.01, relative_step: false, scale_parameter: false, beta1: 0.9);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η: null with <paramref name="relative_step"/> (the default), required without it.</param>
    /// <param name="eps1">ε1 &gt; 0, added to g².</param>
    /// <param name="eps2">ε2 ≥ 0, lower bound of the parameter scale RMS(W) (with <paramref name="scale_parameter"/>).</param>
    /// <param name="clip_threshold">d &gt; 0: the update is divided by max(1, RMS(update)/d).</param>
    /// <param name="decay_rate">c &lt; 0: β2,k = 1 − kᶜ.</param>
    /// <param name="beta1">Momentum β1 in [0, 1), or null for none (no first moment).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update.</param>
    /// <param name="scale_parameter">Multiply the step size by max(ε2, RMS(W)).</param>
    /// <param name="relative_step">Use the step size min(1e-2, 1/√k) instead of <paramref name="lr"/>.</param>
    /// <param name="warmup_init">With <paramref name="relative_step"/>: the step size grows as 1e-6·k.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the momentum is stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; needs <paramref name="beta1"/> (without it there is no moment to compress). For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer GaLoreAdafactor(
        IEnumerable<LowRankParamGroup> groups, double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3, double clip_threshold = 1.0,
        double decay_rate = -0.8, double? beta1 = null, double weight_decay = 0.0, bool scale_parameter = true, bool relative_step = true,
        bool warmup_init = false, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null, int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.GaLoreAdafactor(
            lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, relative_step, warmup_init, rank, update_proj_gap, scale,
            proj_type, projector, oversampling, power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore with Adafactor over a flat parameter list (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η: null with <paramref name="relative_step"/> (the default), required without it.</param>
    /// <param name="eps1">ε1 &gt; 0, added to g².</param>
    /// <param name="eps2">ε2 ≥ 0, lower bound of the parameter scale RMS(W) (with <paramref name="scale_parameter"/>).</param>
    /// <param name="clip_threshold">d &gt; 0: the update is divided by max(1, RMS(update)/d).</param>
    /// <param name="decay_rate">c &lt; 0: β2,k = 1 − kᶜ.</param>
    /// <param name="beta1">Momentum β1 in [0, 1), or null for none (no first moment).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update.</param>
    /// <param name="scale_parameter">Multiply the step size by max(ε2, RMS(W)).</param>
    /// <param name="relative_step">Use the step size min(1e-2, 1/√k) instead of <paramref name="lr"/>.</param>
    /// <param name="warmup_init">With <paramref name="relative_step"/>: the step size grows as 1e-6·k.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the momentum is stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; needs <paramref name="beta1"/> (without it there is no moment to compress). For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLoreAdafactor(
        IEnumerable<Parameter> parameters, double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3, double clip_threshold = 1.0,
        double decay_rate = -0.8, double? beta1 = null, double weight_decay = 0.0, bool scale_parameter = true, bool relative_step = true,
        bool warmup_init = false, int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null, int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLoreAdafactor(
            lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, relative_step, warmup_init, rank, update_proj_gap, scale,
            proj_type, projector, oversampling, power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>GaLore with Adafactor over named parameters (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η: null with <paramref name="relative_step"/> (the default), required without it.</param>
    /// <param name="eps1">ε1 &gt; 0, added to g².</param>
    /// <param name="eps2">ε2 ≥ 0, lower bound of the parameter scale RMS(W) (with <paramref name="scale_parameter"/>).</param>
    /// <param name="clip_threshold">d &gt; 0: the update is divided by max(1, RMS(update)/d).</param>
    /// <param name="decay_rate">c &lt; 0: β2,k = 1 − kᶜ.</param>
    /// <param name="beta1">Momentum β1 in [0, 1), or null for none (no first moment).</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update.</param>
    /// <param name="scale_parameter">Multiply the step size by max(ε2, RMS(W)).</param>
    /// <param name="relative_step">Use the step size min(1e-2, 1/√k) instead of <paramref name="lr"/>.</param>
    /// <param name="warmup_init">With <paramref name="relative_step"/>: the step size grows as 1e-6·k.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α, multiplies the back-projected update.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    /// <param name="optim_bits">How the momentum is stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; needs <paramref name="beta1"/> (without it there is no moment to compress). For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer GaLoreAdafactor(
        IEnumerable<(string name, Parameter parameter)> parameters, double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3,
        double clip_threshold = 1.0, double decay_rate = -0.8, double? beta1 = null, double weight_decay = 0.0, bool scale_parameter = true,
        bool relative_step = true, bool warmup_init = false, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null,
        int? power_iterations = null, long? seed = null, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.GaLoreAdafactor(
            lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, relative_step, warmup_init, rank, update_proj_gap, scale,
            proj_type, projector, oversampling, power_iterations, seed, optim_bits, bf16_stochastic_round, block_size));
}
