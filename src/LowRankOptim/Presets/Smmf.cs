using LowRankOptim.Kernels;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// SMMF (Park &amp; Lee, AAAI 2025, eai-lab/SMMF): every tensor (scalars, vectors, matrices, conv kernels)
    /// is square-matricized by its element count and keeps only the rank-1 factors of its first and second
    /// moments plus the first moment's sign at 1 bit per element, i.e. 2·(n̂ + m̂)·4 + ⌈N/8⌉ bytes instead of
    /// Adam's 8·N. Names and defaults are the reference's (<c>SMMF(params, lr=1e-3, beta=0.9,
    /// eps=1e-8, weight_decay=0.0, decay_rate=-0.5, growth_rate=0.999, vector_reshape=True,
    /// weight_decay_mode='adamw')</c>); the reference suggests <c>decay_rate: -0.8</c> for Transformers.
    /// Groups may override lr and weight decay, or take another projection and rule (say, GaLore for
    /// linear weights) in the same optimizer.
    /// </summary>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="beta">β in [0, 1) for the first moment, or null for none (the direction is then G/(√V + ε)).</param>
    /// <param name="eps">ε ≥ 0, added to √V.</param>
    /// <param name="weight_decay">λ ≥ 0.</param>
    /// <param name="decay_rate">c ≤ 0: β2,k = 1 − k^c.</param>
    /// <param name="growth_rate">g in [0, 1]: β1,k = β·g^(k−1).</param>
    /// <param name="vector_reshape">Square-matricize 1-D tensors too (true), or keep their full M and V (false).</param>
    /// <param name="weight_decay_mode">Decoupled before the update (<c>adamw</c>) or L2 (<c>adam</c>; see <see cref="SmmfWeightDecayMode.Adam"/>).</param>
    /// <param name="kernel">The fused CPU kernel (Auto: where it applies) or the TorchSharp-ops reference.</param>
    /// <returns>New, validated options: <see cref="SmmfConfig"/> options in the full space (<see cref="FullSpace.Instance"/>).</returns>
    public static LowRankOptions Smmf(
        double lr = 1e-3, double? beta = 0.9, double eps = 1e-8, double weight_decay = 0.0, double decay_rate = -0.5, double growth_rate = 0.999,
        bool vector_reshape = true, SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto) =>
        Validated(new LowRankOptions
        {
            LearningRate = lr,
            WeightDecay = weight_decay,
            DecayOrder = weight_decay_mode switch
            {
                SmmfWeightDecayMode.AdamW => WeightDecayOrder.BeforeUpdate,
                SmmfWeightDecayMode.Adam => WeightDecayOrder.CoupledToGradient,
                _ => throw new ArgumentOutOfRangeException(nameof(weight_decay_mode), weight_decay_mode,
                    $"must be one of {string.Join(", ", Enum.GetNames<SmmfWeightDecayMode>())}."),
            },
            Projection = FullSpace.Instance,
            Rule = new SmmfConfig(beta, eps, decay_rate, growth_rate, vector_reshape, kernel),
            // No optim_bits knob: SMMF's factored moments are already compressed, and validation refuses a compressed storage for them.
            // No bf16_stochastic_round knob either (it would come after kernel, the last knob): set LowRankOptions.WeightRounding.
            MomentStorage = MomentStorage.Dense,
            WeightRounding = WeightRounding.Nearest,
        });
}

public static partial class LowRank
{
    /// <summary>SMMF over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.Smmf(...))</c>; see <see cref="LowRankPresets.Smmf"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.Smmf(model.parameters(), lr: 1e-3, decay_rate: -0.8, weight_decay: 5e-4);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="beta">β in [0, 1) for the first moment, or null for none (the direction is then G/(√V + ε)).</param>
    /// <param name="eps">ε ≥ 0, added to √V.</param>
    /// <param name="weight_decay">λ ≥ 0.</param>
    /// <param name="decay_rate">c ≤ 0: β2,k = 1 − k^c.</param>
    /// <param name="growth_rate">g in [0, 1]: β1,k = β·g^(k−1).</param>
    /// <param name="vector_reshape">Square-matricize 1-D tensors too (true), or keep their full M and V (false).</param>
    /// <param name="weight_decay_mode">Decoupled before the update (<c>adamw</c>) or L2 (<c>adam</c>; see <see cref="SmmfWeightDecayMode.Adam"/>).</param>
    /// <param name="kernel">The fused CPU kernel (Auto: where it applies) or the TorchSharp-ops reference.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Smmf(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double? beta = 0.9, double eps = 1e-8, double weight_decay = 0.0,
        double decay_rate = -0.5, double growth_rate = 0.999, bool vector_reshape = true,
        SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto) =>
        new(groups, LowRankPresets.Smmf(
            lr, beta, eps, weight_decay, decay_rate, growth_rate, vector_reshape, weight_decay_mode, kernel));

    /// <summary>SMMF over a flat parameter list (one group): every tensor is factorized.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="beta">β in [0, 1) for the first moment, or null for none (the direction is then G/(√V + ε)).</param>
    /// <param name="eps">ε ≥ 0, added to √V.</param>
    /// <param name="weight_decay">λ ≥ 0.</param>
    /// <param name="decay_rate">c ≤ 0: β2,k = 1 − k^c.</param>
    /// <param name="growth_rate">g in [0, 1]: β1,k = β·g^(k−1).</param>
    /// <param name="vector_reshape">Square-matricize 1-D tensors too (true), or keep their full M and V (false).</param>
    /// <param name="weight_decay_mode">Decoupled before the update (<c>adamw</c>) or L2 (<c>adam</c>; see <see cref="SmmfWeightDecayMode.Adam"/>).</param>
    /// <param name="kernel">The fused CPU kernel (Auto: where it applies) or the TorchSharp-ops reference.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Smmf(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double? beta = 0.9, double eps = 1e-8, double weight_decay = 0.0,
        double decay_rate = -0.5, double growth_rate = 0.999, bool vector_reshape = true,
        SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto) =>
        new(OneGroup(parameters), LowRankPresets.Smmf(
            lr, beta, eps, weight_decay, decay_rate, growth_rate, vector_reshape, weight_decay_mode, kernel));

    /// <summary>SMMF over named parameters (one group): every tensor is factorized.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="beta">β in [0, 1) for the first moment, or null for none (the direction is then G/(√V + ε)).</param>
    /// <param name="eps">ε ≥ 0, added to √V.</param>
    /// <param name="weight_decay">λ ≥ 0.</param>
    /// <param name="decay_rate">c ≤ 0: β2,k = 1 − k^c.</param>
    /// <param name="growth_rate">g in [0, 1]: β1,k = β·g^(k−1).</param>
    /// <param name="vector_reshape">Square-matricize 1-D tensors too (true), or keep their full M and V (false).</param>
    /// <param name="weight_decay_mode">Decoupled before the update (<c>adamw</c>) or L2 (<c>adam</c>; see <see cref="SmmfWeightDecayMode.Adam"/>).</param>
    /// <param name="kernel">The fused CPU kernel (Auto: where it applies) or the TorchSharp-ops reference.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Smmf(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double? beta = 0.9, double eps = 1e-8, double weight_decay = 0.0,
        double decay_rate = -0.5, double growth_rate = 0.999, bool vector_reshape = true,
        SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto) =>
        new(OneGroup(parameters), LowRankPresets.Smmf(
            lr, beta, eps, weight_decay, decay_rate, growth_rate, vector_reshape, weight_decay_mode, kernel));
}
