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
