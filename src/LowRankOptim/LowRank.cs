using System.Diagnostics.CodeAnalysis;
using LowRankOptim.Projection;
using LowRankOptim.Rules;
using TorchSharp.Modules;

namespace LowRankOptim;

/// <summary>Which AdamW conventions a factory sets up.</summary>
public enum AdamConventions
{
    /// <summary>galore_torch / Hugging Face: ε added to the uncorrected √v, weight decay after the update.</summary>
    GaLoreReference,
    /// <summary>torch.optim.AdamW: ε added after bias correction, weight decay before the update.</summary>
    TorchOptim,
}

/// <summary>SMMF's <c>weight_decay_mode</c>.</summary>
public enum SmmfWeightDecayMode
{
    /// <summary><c>"adamw"</c> (the default): decoupled, W ← W·(1 − η·λ) before the update (<see cref="WeightDecayOrder.BeforeUpdate"/>).</summary>
    AdamW,
    /// <summary>
    /// <c>"adam"</c>: L2, λ·W added to the gradient before the moments (<see cref="WeightDecayOrder.CoupledToGradient"/>).
    /// This is what the reference intends; its own <c>adam</c> mode computes the sum and drops it (a no-op).
    /// </summary>
    Adam,
}

/// <summary>
/// Factories shaped like <c>torch.optim.AdamW(...)</c>, with the same parameter names, so switching an
/// existing training loop is a rename. Each returns a <see cref="LowRankOptimizer"/>.
/// </summary>
[SuppressMessage("Naming", "CA1707", Justification = "Parameter names follow torch.optim and the reference implementations.")]
public static class LowRank
{
    /// <summary>
    /// GaLore with AdamW (Zhao et al. 2024): every 2-D parameter's gradient is projected onto its top-r
    /// singular subspace, refreshed by SVD every <paramref name="update_proj_gap"/> steps; Adam runs there;
    /// the update is projected back and scaled by <paramref name="scale"/>. Other tensors get plain AdamW.
    /// Defaults follow galore_torch's <c>AdamW</c> (ε = 1e-6, weight decay 0) and the paper (rank 128,
    /// T = 200, α = 0.25).
    /// </summary>
    /// <example><code>
    /// var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 128, update_proj_gap: 200, scale: 0.25);
    /// </code></example>
    public static LowRankOptimizer GaLore(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference)
    {
        var projection = new SvdProjection(rank, update_proj_gap, scale, proj_type);
        return new LowRankOptimizer(groups, AdamDefaults(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions, projection));
    }

    /// <summary>GaLore with AdamW over a flat parameter list: every 2-D parameter is projected.</summary>
    public static LowRankOptimizer GaLore(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference) =>
        GaLore([new LowRankParamGroup(parameters)], lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, correct_bias, conventions);

    /// <summary>
    /// GaLore with Adafactor (galore_torch's <c>Adafactor</c>, a copy of Hugging Face's): factored second
    /// moment in the subspace, update clipping, relative step size. Defaults are Hugging Face's
    /// (relative_step and scale_parameter on, lr unset); pass <paramref name="lr"/> with
    /// <c>relative_step: false</c> for a fixed rate, as GaLore's training script does.
    /// </summary>
    public static LowRankOptimizer GaLoreAdafactor(
        IEnumerable<LowRankParamGroup> groups, double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3,
        double clip_threshold = 1.0, double decay_rate = -0.8, double? beta1 = null, double weight_decay = 0.0,
        bool scale_parameter = true, bool relative_step = true, bool warmup_init = false,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std)
    {
        if (relative_step && lr is not null)
            throw new ArgumentException($"lr = {lr} cannot be combined with relative_step = true; leave lr null or pass relative_step: false.", nameof(lr));
        if (!relative_step && lr is null)
            throw new ArgumentException("lr is required when relative_step = false.", nameof(lr));
        var defaults = new LowRankOptions
        {
            LearningRate = lr ?? 0.0,
            WeightDecay = weight_decay,
            DecayOrder = WeightDecayOrder.BeforeUpdate,
            Projection = new SvdProjection(rank, update_proj_gap, scale, proj_type),
            Rule = new AdafactorConfig(beta1, eps1, eps2, clip_threshold, decay_rate, relative_step, scale_parameter, warmup_init),
        };
        ValidateDefaults(defaults);
        return new LowRankOptimizer(groups, defaults);
    }

    /// <summary>
    /// Plain AdamW in the full space with torch.optim's conventions and TorchSharp's defaults (note:
    /// TorchSharp's <c>weight_decay</c> default is 0, PyTorch's 0.01): equal to TorchSharp's
    /// <c>torch.optim.AdamW</c>, and the baseline the low-rank optimizers are compared with.
    /// </summary>
    public static LowRankOptimizer AdamW(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0, AdamConventions conventions = AdamConventions.TorchOptim) =>
        new([new LowRankParamGroup(parameters)], AdamDefaults(lr, beta1, beta2, eps, weight_decay, true, conventions, FullSpace.Instance));

    /// <summary>
    /// SMMF (Park &amp; Lee, AAAI 2025, eai-lab/SMMF): every tensor (scalars, vectors, matrices, conv kernels)
    /// is square-matricized by its element count and keeps only the rank-1 factors of its first and second
    /// moments plus the first moment's sign at 1 bit per element, i.e. 2·(n̂ + m̂)·4 + ⌈N/8⌉ bytes instead of
    /// Adam's 8·N. Parameter names and defaults are the reference's (<c>SMMF(params, lr=1e-3, beta=0.9,
    /// eps=1e-8, weight_decay=0.0, decay_rate=-0.5, growth_rate=0.999, vector_reshape=True,
    /// weight_decay_mode='adamw')</c>); the reference suggests <c>decay_rate: -0.8</c> for Transformers.
    /// Groups may override lr and weight decay, or take another projection and rule (say, GaLore for
    /// linear weights) in the same optimizer.
    /// </summary>
    /// <param name="groups">The parameter groups; unset options come from the arguments below.</param>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="beta">β in [0, 1) for the first moment, or null for none (the direction is then G/(√V + ε)).</param>
    /// <param name="eps">ε ≥ 0, added to √V.</param>
    /// <param name="weight_decay">λ ≥ 0.</param>
    /// <param name="decay_rate">c ≤ 0: β2,k = 1 − k^c.</param>
    /// <param name="growth_rate">g in [0, 1]: β1,k = β·g^(k−1).</param>
    /// <param name="vector_reshape">Square-matricize 1-D tensors too (true), or keep their full M and V (false).</param>
    /// <param name="weight_decay_mode">Decoupled before the update (<c>adamw</c>) or L2 (<c>adam</c>; see <see cref="SmmfWeightDecayMode.Adam"/>).</param>
    /// <param name="kernel">The fused CPU kernel (Auto: where it applies) or the TorchSharp-ops reference.</param>
    /// <example><code>
    /// var opt = LowRank.Smmf(model.parameters(), lr: 1e-3, decay_rate: -0.8, weight_decay: 5e-4);
    /// </code></example>
    public static LowRankOptimizer Smmf(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double? beta = 0.9, double eps = 1e-8,
        double weight_decay = 0.0, double decay_rate = -0.5, double growth_rate = 0.999, bool vector_reshape = true,
        SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto)
    {
        var defaults = new LowRankOptions
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
        };
        ValidateDefaults(defaults);
        return new LowRankOptimizer(groups, defaults);
    }

    /// <summary>SMMF over a flat parameter list (one group); see the overload with groups for the arguments.</summary>
    public static LowRankOptimizer Smmf(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double? beta = 0.9, double eps = 1e-8,
        double weight_decay = 0.0, double decay_rate = -0.5, double growth_rate = 0.999, bool vector_reshape = true,
        SmmfWeightDecayMode weight_decay_mode = SmmfWeightDecayMode.AdamW, KernelPreference kernel = KernelPreference.Auto) =>
        Smmf([new LowRankParamGroup(parameters)], lr, beta, eps, weight_decay, decay_rate, growth_rate, vector_reshape, weight_decay_mode, kernel);

    /// <summary>
    /// Splits a module's parameters into the two usual groups (galore_torch's README): the weights of
    /// <see cref="Linear"/> layers, which take the optimizer's projection, and everything else
    /// (embeddings, norms, biases, other tensors), trained in the full space.
    /// </summary>
    /// <param name="module">The model.</param>
    /// <param name="include">
    /// Optional filter on the Linear module's name (e.g. galore_torch's training script projects only modules
    /// whose name contains "attn" or "mlp", leaving the LM head in the full space); all Linear layers when null.
    /// </param>
    public static LowRankParamGroup[] SplitParameters(TorchSharp.torch.nn.Module module, Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        var projected = new List<Parameter>();
        var projectedHandles = new HashSet<IntPtr>();
        foreach (var (name, m) in module.named_modules())
            if (m is Linear linear && (include?.Invoke(name) ?? true) && linear.weight is { } w && projectedHandles.Add(w.Handle))
                projected.Add(w);
        var rest = module.parameters().Where(p => !projectedHandles.Contains(p.Handle)).ToList();
        return
        [
            new LowRankParamGroup(projected),
            new LowRankParamGroup(rest, new LowRankOptions { Projection = FullSpace.Instance }),
        ];
    }

    private static LowRankOptions AdamDefaults(double lr, double beta1, double beta2, double eps, double weight_decay,
        bool correct_bias, AdamConventions conventions, IProjectionConfig projection)
    {
        if (!Enum.IsDefined(conventions))
            throw new ArgumentOutOfRangeException(nameof(conventions), conventions, $"must be one of {string.Join(", ", Enum.GetNames<AdamConventions>())}.");
        var reference = conventions == AdamConventions.GaLoreReference;
        var defaults = new LowRankOptions
        {
            LearningRate = lr,
            WeightDecay = weight_decay,
            DecayOrder = reference ? WeightDecayOrder.AfterUpdate : WeightDecayOrder.BeforeUpdate,
            Projection = projection,
            Rule = new AdamConfig(beta1, beta2, eps, correct_bias,
                reference ? AdamEpsilonMode.BeforeBiasCorrection : AdamEpsilonMode.AfterBiasCorrection),
        };
        ValidateDefaults(defaults);
        return defaults;
    }

    private static void ValidateDefaults(LowRankOptions defaults) => defaults.Validate("optimizer defaults");
}
