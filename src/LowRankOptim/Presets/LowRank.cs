using System.Diagnostics.CodeAnalysis;
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

    /// <summary>
    /// GaLore+ with AdamW (Liao et al. 2024; design in <c>docs/algorithms/galore-plus.md</c>): GaLore whose bases
    /// come from randomized subspace iteration; attention weights (groups whose <see cref="GaLorePlusProjection"/>
    /// has <see cref="GaLorePlusProjection.Heads"/>, see <see cref="HeadGroups"/>) estimate the basis from one
    /// seeded-random head's gradient block and share it across heads; optionally a sparse residual with its own
    /// Adam moments (<paramref name="residual_density"/> &gt; 0). Unset group options take the values below;
    /// the default projection has no heads (ordinary weights).
    /// </summary>
    /// <example><code>
    /// var groups = LowRank.HeadGroups(model, name => heads.Of(name), new GaLorePlusProjection(Rank: 128, ResidualDensity: 0.01));
    /// var opt = LowRank.GaLorePlus(groups, lr: 0.01, rank: 128, residual_density: 0.01);
    /// </code></example>
    /// <param name="groups">The parameter groups.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1 (also of the residual moments).</param>
    /// <param name="beta2">β2 (also of the residual moments).</param>
    /// <param name="eps">ε (also of the residual moments).</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r, the rank of the shared basis (clamped to the head size for attention weights).</param>
    /// <param name="update_proj_gap">T, the refresh period.</param>
    /// <param name="scale">α.</param>
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
    public static LowRankOptimizer GaLorePlus(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-6, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        int oversampling = 8, int power_iterations = 2, long seed = 0, CrossHeadReading cross_head = CrossHeadReading.SharedLongSide,
        double residual_density = 0.0, int residual_warmup = 200, bool residual_reestimate = false, double residual_scale = 1.0,
        bool correct_bias = true, AdamConventions conventions = AdamConventions.GaLoreReference)
    {
        var projection = new GaLorePlusProjection(rank, update_proj_gap, scale, oversampling, power_iterations, seed, null, cross_head,
            residual_density, residual_warmup, residual_reestimate, residual_scale);
        return new LowRankOptimizer(groups, AdamDefaults(lr, beta1, beta2, eps, weight_decay, correct_bias, conventions, projection));
    }

    /// <summary>
    /// GaLore+ over a model: its <see cref="Linear"/> weights (those <paramref name="include"/> accepts) are
    /// projected, attention weights with the head layout <paramref name="heads_of"/> gives for their module name,
    /// everything else is trained in the full space. See the overload with groups for the other arguments.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="heads_of">The head layout of a Linear module by name (null: not an attention projection).</param>
    /// <param name="include">Which Linear modules are projected (all when null).</param>
    /// <param name="lr">η.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">α.</param>
    /// <param name="oversampling">p.</param>
    /// <param name="power_iterations">q.</param>
    /// <param name="seed">The seed of the sketches and head draws.</param>
    /// <param name="cross_head">How the one-head basis is shared.</param>
    /// <param name="residual_density">ρ.</param>
    /// <param name="residual_warmup">S_w.</param>
    /// <param name="residual_reestimate">Re-choose the residual entries at every refresh after the warm-up.</param>
    /// <param name="residual_scale">α_e.</param>
    public static LowRankOptimizer GaLorePlus(
        TorchSharp.torch.nn.Module model, Func<string, AttentionHeads?> heads_of, Func<string, bool>? include = null,
        double lr = 1e-3, double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 0.25,
        int oversampling = 8, int power_iterations = 2, long seed = 0, CrossHeadReading cross_head = CrossHeadReading.SharedLongSide,
        double residual_density = 0.0, int residual_warmup = 200, bool residual_reestimate = false, double residual_scale = 1.0)
    {
        var projection = new GaLorePlusProjection(rank, update_proj_gap, scale, oversampling, power_iterations, seed, null, cross_head,
            residual_density, residual_warmup, residual_reestimate, residual_scale);
        return GaLorePlus(HeadGroups(model, heads_of, projection, include), lr, weight_decay: weight_decay, rank: rank, update_proj_gap: update_proj_gap,
            scale: scale, oversampling: oversampling, power_iterations: power_iterations, seed: seed, cross_head: cross_head,
            residual_density: residual_density, residual_warmup: residual_warmup, residual_reestimate: residual_reestimate, residual_scale: residual_scale);
    }

    /// <summary>
    /// Splits a model's parameters for GaLore+: one group per distinct head layout among the projected
    /// <see cref="Linear"/> weights (its options' projection is <paramref name="projection"/> with that layout;
    /// weights without one get <paramref name="projection"/> without heads), then one full-space group with the
    /// rest (embeddings, norms, biases, Linear layers <paramref name="include"/> rejects). Empty groups are left out
    /// except the last.
    /// </summary>
    /// <param name="module">The model.</param>
    /// <param name="heads_of">The head layout of a Linear module by its name, or null when it is not an attention projection.</param>
    /// <param name="projection">The GaLore+ settings shared by every projected group.</param>
    /// <param name="include">Which Linear modules are projected (all when null).</param>
    public static LowRankParamGroup[] HeadGroups(TorchSharp.torch.nn.Module module, Func<string, AttentionHeads?> heads_of,
        GaLorePlusProjection projection, Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(heads_of);
        ArgumentNullException.ThrowIfNull(projection);
        var byLayout = new List<(AttentionHeads? Heads, List<Parameter> Parameters)>();
        var projectedHandles = new HashSet<IntPtr>();
        foreach (var (name, m) in module.named_modules())
        {
            if (m is not Linear linear || !(include?.Invoke(name) ?? true) || linear.weight is not { } w || !projectedHandles.Add(w.Handle)) continue;
            var heads = heads_of(name);
            var slot = byLayout.FindIndex(g => Equals(g.Heads, heads));
            if (slot < 0) byLayout.Add((heads, [w]));
            else byLayout[slot].Parameters.Add(w);
        }
        var rest = module.parameters().Where(p => !projectedHandles.Contains(p.Handle)).ToList();
        return
        [
            .. byLayout.Select(g => new LowRankParamGroup(g.Parameters, new LowRankOptions { Projection = projection with { Heads = g.Heads } })),
            new LowRankParamGroup(rest, new LowRankOptions { Projection = FullSpace.Instance }),
        ];
    }

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
