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

/// <summary>How GaLore's projector estimates the top-r singular subspace at a refresh.</summary>
public enum GaLoreProjector
{
    /// <summary>The exact thin SVD (<see cref="SvdProjection"/>), as galore_torch.</summary>
    Svd,
    /// <summary>Randomized subspace iteration (<see cref="RandomizedSvdProjection"/>), as GaLore+ and GaLore 2.</summary>
    RandomizedSvd,
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
    /// <param name="groups">The parameter groups; unset group options take the values below.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α.</param>
    /// <param name="proj_type">The projected side(s).</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="conventions">galore_torch's or torch.optim's ε placement and decay order.</param>
    /// <param name="projector">How a refresh estimates the subspace: exact SVD (default) or randomized subspace iteration.</param>
    /// <param name="oversampling">Randomized projector only: extra sketch columns p (default 8).</param>
    /// <param name="power_iterations">Randomized projector only: power iterations q (default 2).</param>
    /// <param name="seed">Randomized projector only: the seed the sketches derive from (default 0).</param>
    public static LowRankOptimizer GaLore(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference,
        GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null, int? power_iterations = null, long? seed = null)
    {
        var projection = GaLoreProjection(rank, update_proj_gap, scale, proj_type, projector, oversampling, power_iterations, seed);
        return new LowRankOptimizer(groups, AdamDefaults(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions, projection));
    }

    /// <summary>GaLore with AdamW over a flat parameter list: every 2-D parameter is projected.</summary>
    public static LowRankOptimizer GaLore(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference,
        GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null, int? power_iterations = null, long? seed = null) =>
        GaLore([new LowRankParamGroup(parameters)], lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, correct_bias, conventions,
            projector, oversampling, power_iterations, seed);

    /// <summary>
    /// DCT-AdamW (Modoranu et al. 2025, IST-DASLab's <c>DCTAdamW</c>): SVD-free low-rank AdamW. Every 2-D
    /// parameter's gradient is projected onto r columns of the orthonormal DCT-II basis of its smaller
    /// dimension, chosen by the ℓ1 norm of G·C (re-selected at steps 1 and k mod <paramref name="update_proj_gap"/> = 0);
    /// the state per matrix is the moments and r indices, plus one basis per distinct size shared by all
    /// matrices. AdamW with torch.optim's conventions (ε after bias correction, decay before the update),
    /// no scale. 1-D parameters and matrices with a dimension ≥ <paramref name="max_shape"/> get plain AdamW.
    /// </summary>
    /// <param name="groups">The parameter groups; unset group options (lr, weight decay) take the values below.</param>
    /// <param name="lr">η.</param>
    /// <param name="weight_decay">λ, decoupled, applied before the update (W ← W·(1 − ηλ)).</param>
    /// <param name="rank">r, the number of DCT columns kept (clamped to the basis size).</param>
    /// <param name="update_proj_gap">T (reference default 1: re-select every step).</param>
    /// <param name="sim_type">How G·C is computed at a re-selection: matrix product (reference) or the FFT (same result, faster).</param>
    /// <param name="ell_norm">p of the ℓp norm that scores the columns (reference default 1).</param>
    /// <param name="max_shape">Matrices with a dimension ≥ this train in the full space (reference default 32000).</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε (added to √v̂).</param>
    /// <param name="proj_type">The side; <see cref="ProjectionType.Std"/> (the smaller dimension) as the reference.</param>
    /// <example><code>
    /// var opt = LowRank.DctAdamW(model.parameters(), lr: 1e-3, rank: 256, update_proj_gap: 200, sim_type: DctTransformMethod.FastTransform);
    /// </code></example>
    public static LowRankOptimizer DctAdamW(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 1,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, ProjectionType proj_type = ProjectionType.Std)
    {
        var projection = new DctProjection(rank, update_proj_gap, 1.0, sim_type, ell_norm, max_shape, proj_type);
        return new LowRankOptimizer(groups, AdamDefaults(lr, beta1, beta2, eps, weight_decay, true, AdamConventions.TorchOptim, projection));
    }

    /// <summary>DCT-AdamW over a flat parameter list (1-D parameters and very large matrices get plain AdamW).</summary>
    public static LowRankOptimizer DctAdamW(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 1,
        DctTransformMethod sim_type = DctTransformMethod.MatrixProduct, double ell_norm = 1.0, long max_shape = 32000,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, ProjectionType proj_type = ProjectionType.Std) =>
        DctAdamW([new LowRankParamGroup(parameters)], lr, weight_decay, rank, update_proj_gap, sim_type, ell_norm, max_shape, beta1, beta2, eps, proj_type);

    /// <summary>
    /// Online Subspace Descent with AdamW (Liang et al. 2024, <c>proj_type="continuous"</c>): GaLore-AdamW whose
    /// projection P is initialized by one SVD and then, instead of being recomputed, takes one step of its own
    /// optimizer per weight step on the online-PCA loss ‖Ĝ·PᵀP − Ĝ‖² (Ĝ = G/‖G‖), with step size
    /// (1/<paramref name="update_proj_gap"/>)·(η_k/η_0). Defaults follow the reference: the weights use
    /// galore_torch's AdamW (ε = 1e-6, decay after the update); P uses torch.optim.AdamW's defaults with
    /// weight decay 0.01.
    /// </summary>
    /// <param name="groups">The parameter groups; unset group options take the values below.</param>
    /// <param name="lr">η (η_0 of P's step size is each group's initial lr).</param>
    /// <param name="beta1">β1 of the weights' AdamW.</param>
    /// <param name="beta2">β2 of the weights' AdamW.</param>
    /// <param name="eps">ε of the weights' AdamW.</param>
    /// <param name="weight_decay">λ of the weights.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T: P's step size is (1/T)·(η_k/η_0).</param>
    /// <param name="scale">α.</param>
    /// <param name="proj_type">The side (Full is not supported).</param>
    /// <param name="correct_bias">Adam's bias corrections for the weights.</param>
    /// <param name="conventions">ε placement and decay order of the weights' AdamW.</param>
    /// <param name="p_optimizer">P's update rule (null: AdamW with torch.optim's defaults, as the reference's <c>continuous</c>).</param>
    /// <param name="p_weight_decay">λ_P, P's decoupled weight decay (reference 0.01).</param>
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01)
    {
        var projection = new OnlinePcaProjection(rank, update_proj_gap, scale, proj_type, BasisRule: p_optimizer, BasisWeightDecay: p_weight_decay);
        return new LowRankOptimizer(groups, AdamDefaults(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions, projection));
    }

    /// <summary>Online Subspace Descent over a flat parameter list: every 2-D parameter is projected.</summary>
    public static LowRankOptimizer OnlineSubspaceDescent(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        ProjectionType proj_type = ProjectionType.Std, bool correct_bias = true,
        AdamConventions conventions = AdamConventions.GaLoreReference, IUpdateRuleConfig? p_optimizer = null, double p_weight_decay = 0.01) =>
        OnlineSubspaceDescent([new LowRankParamGroup(parameters)], lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type,
            correct_bias, conventions, p_optimizer, p_weight_decay);

    private static IProjectionConfig GaLoreProjection(int rank, int gap, double scale, ProjectionType type,
        GaLoreProjector projector, int? oversampling, int? powerIterations, long? seed)
    {
        switch (projector)
        {
            case GaLoreProjector.Svd:
                if (oversampling is not null) throw OnlyRandomized(nameof(oversampling), oversampling);
                if (powerIterations is not null) throw OnlyRandomized("power_iterations", powerIterations);
                if (seed is not null) throw OnlyRandomized(nameof(seed), seed);
                return new SvdProjection(rank, gap, scale, type);
            case GaLoreProjector.RandomizedSvd:
                return new RandomizedSvdProjection(rank, gap, scale, type, Oversampling: oversampling ?? 8, PowerIterations: powerIterations ?? 2, Seed: seed ?? 0);
            default:
                throw new ArgumentOutOfRangeException(nameof(projector), projector, $"must be one of {string.Join(", ", Enum.GetNames<GaLoreProjector>())}.");
        }
    }

    private static ArgumentException OnlyRandomized(string name, object? value) =>
        new($"{name} = {value} applies only to projector: GaLoreProjector.RandomizedSvd; the exact SVD projector has no such option.", name);

    /// <summary>
    /// GaLore with Adafactor (galore_torch's <c>Adafactor</c>, a copy of Hugging Face's): factored second
    /// moment in the subspace, update clipping, relative step size. Defaults are Hugging Face's
    /// (relative_step and scale_parameter on, lr unset); pass <paramref name="lr"/> with
    /// <c>relative_step: false</c> for a fixed rate, as GaLore's training script does. <paramref name="projector"/>
    /// (with <paramref name="oversampling"/>, <paramref name="power_iterations"/>, <paramref name="seed"/>) selects
    /// randomized subspace iteration instead of the exact SVD, as in <see cref="GaLore(IEnumerable{LowRankParamGroup}, double, double, double, double, double, int, int, double, ProjectionType, bool, AdamConventions, GaLoreProjector, int?, int?, long?)"/>.
    /// </summary>
    public static LowRankOptimizer GaLoreAdafactor(
        IEnumerable<LowRankParamGroup> groups, double? lr = null, double eps1 = 1e-30, double eps2 = 1e-3,
        double clip_threshold = 1.0, double decay_rate = -0.8, double? beta1 = null, double weight_decay = 0.0,
        bool scale_parameter = true, bool relative_step = true, bool warmup_init = false,
        int rank = 128, int update_proj_gap = 200, double scale = 0.25, ProjectionType proj_type = ProjectionType.Std,
        GaLoreProjector projector = GaLoreProjector.Svd, int? oversampling = null, int? power_iterations = null, long? seed = null)
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
            Projection = GaLoreProjection(rank, update_proj_gap, scale, proj_type, projector, oversampling, power_iterations, seed),
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
    public static LowRankParamGroup[] SplitParameters(TorchSharp.torch.nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var projected = new List<Parameter>();
        var projectedHandles = new HashSet<IntPtr>();
        foreach (var (_, m) in module.named_modules())
            if (m is Linear linear && linear.weight is { } w && projectedHandles.Add(w.Handle))
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
