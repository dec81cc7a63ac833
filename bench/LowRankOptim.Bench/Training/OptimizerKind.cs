using LowRankOptim.Bench.Model;
using TorchSharp;
using TorchSharp.Modules;

namespace LowRankOptim.Bench.Training;

/// <summary>The optimizers the pretraining comparison can run.</summary>
public enum OptimizerKind
{
    /// <summary>TorchSharp's own torch.optim.AdamW, the baseline.</summary>
    AdamW,
    /// <summary>GaLore (exact SVD) + AdamW on Linear weights; AdamW on the rest.</summary>
    GaLore,
    /// <summary>GaLore (exact SVD) + Adafactor with β1 = 0.9 and a fixed learning rate.</summary>
    GaLoreAdafactor,
    /// <summary>GaLore with randomized subspace iteration instead of the exact SVD.</summary>
    GaLoreRandomized,
    /// <summary>
    /// DCT-AdamW: columns of a shared DCT basis selected by alignment (SVD-free), run with the comparison's
    /// T and α like the other projectors (its reference defaults are T = 1 and no scale).
    /// </summary>
    Dct,
    /// <summary>Online Subspace Descent: the basis follows online PCA, one step per optimizer step.</summary>
    Osd,
    /// <summary>SMMF on every parameter (square-matricized rank-1 moments, 1-bit signs), no projection.</summary>
    Smmf,
    /// <summary>GaLore+ + AdamW: randomized subspace iteration, cross-head bases on q/k/v/o (LLaMA head counts), no sparse residual.</summary>
    GaLorePlus,
    /// <summary>APOLLO: channel-wise scaling of the raw gradient from Adam on a seeded random projection (the comparison's rank and T; its own scale 1).</summary>
    Apollo,
    /// <summary>APOLLO-Mini: rank 1, tensor-wise scaling, scale 128 (the comparison's T).</summary>
    ApolloMini,
}

/// <summary>Names, default learning rates and construction of each <see cref="OptimizerKind"/>.</summary>
public static class OptimizerCatalog
{
    /// <summary>The command-line name, e.g. "galore-adafactor".</summary>
    public static string CliName(this OptimizerKind kind) => kind switch
    {
        OptimizerKind.AdamW => "adamw",
        OptimizerKind.GaLore => "galore",
        OptimizerKind.GaLoreAdafactor => "galore-adafactor",
        OptimizerKind.GaLoreRandomized => "galore-rsi",
        OptimizerKind.Dct => "dct",
        OptimizerKind.Osd => "osd",
        OptimizerKind.Smmf => "smmf",
        OptimizerKind.GaLorePlus => "galore-plus",
        OptimizerKind.Apollo => "apollo",
        OptimizerKind.ApolloMini => "apollo-mini",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static IReadOnlyList<OptimizerKind> All { get; } = Enum.GetValues<OptimizerKind>();

    public static OptimizerKind Parse(string name) =>
        All.FirstOrDefault(k => k.CliName() == name.Trim().ToLowerInvariant(), (OptimizerKind)(-1)) is var k && Enum.IsDefined(k)
            ? k
            : throw new ArgumentException($"unknown optimizer '{name}'; choose from {string.Join(", ", All.Select(CliName))}.");

    /// <summary>Learning rates that work on the tiny model; the --sweep-lr grid is centred on them.</summary>
    public static double DefaultLearningRate(OptimizerKind kind) => kind switch
    {
        // The best of each optimizer's grid in the recorded sweep (docs/benchmarks.md, "Pretraining").
        OptimizerKind.AdamW => 1.5e-3,
        OptimizerKind.GaLore => 2e-2,
        OptimizerKind.GaLoreAdafactor => 2e-2,
        OptimizerKind.GaLoreRandomized => 2e-2,
        OptimizerKind.Dct => 2e-2,
        OptimizerKind.Osd => 2e-2,
        OptimizerKind.Smmf => 3e-3,
        OptimizerKind.GaLorePlus => 2e-2,
        OptimizerKind.Apollo => 1e-2,
        OptimizerKind.ApolloMini => 5e-3,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// Which parameters a low-rank optimizer projects in the LLaMA model: the Linear layers of attention and
    /// MLP blocks, as galore_torch's training script does (embeddings, norms and the LM head stay full).
    /// </summary>
    public static bool IsProjected(string moduleOrParameterName) =>
        moduleOrParameterName.Contains(".attn.") || moduleOrParameterName.Contains(".mlp.");

    /// <summary>Whether <paramref name="kind"/> can store its moments in <paramref name="optimBits"/> bits (SMMF only in 32: it has none to quantize).</summary>
    public static bool SupportsOptimBits(OptimizerKind kind, int optimBits) => optimBits == 32 || kind != OptimizerKind.Smmf;

    /// <summary>
    /// The complete options of the projected group and of the full-space group of <paramref name="kind"/>;
    /// AdamW (TorchSharp's) is described by its equivalent, full-space Adam with torch conventions.
    /// </summary>
    public static (LowRankOptions Projected, LowRankOptions Full) GroupOptions(OptimizerKind kind, double lr, LowRankSettings s)
    {
        var defaults = kind switch
        {
            OptimizerKind.AdamW => LowRankPresets.AdamW(lr: lr, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.GaLore => LowRankPresets.GaLore(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.GaLoreAdafactor => LowRankPresets.GaLoreAdafactor(lr: lr, beta1: 0.9, scale_parameter: false, relative_step: false,
                rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.GaLoreRandomized => LowRankPresets.GaLore(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale,
                projector: GaLoreProjector.RandomizedSvd, seed: 0, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.Dct => LowRankPresets.DctAdamW(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale, sim_type: s.DctMethod, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.Osd => LowRankPresets.OnlineSubspaceDescent(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale, optim_bits: s.OptimBits, block_size: s.BlockSize),
            // SMMF factorizes every tensor itself: both groups train in the full space; it has no moments to store in fewer bits.
            OptimizerKind.Smmf when !SupportsOptimBits(kind, s.OptimBits) => throw new ArgumentException(
                $"smmf cannot store its moments in {s.OptimBits} bits: its factored moments are already compressed and have no dense moment to quantize; use optim_bits 32 for smmf."),
            OptimizerKind.Smmf => LowRankPresets.Smmf(lr: lr, decay_rate: -0.8),
            OptimizerKind.GaLorePlus => LowRankPresets.GaLorePlus(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale, optim_bits: s.OptimBits, block_size: s.BlockSize),
            // APOLLO's scale is not GaLore's α (the update is multiplied by √scale): it keeps its own defaults.
            OptimizerKind.Apollo => LowRankPresets.Apollo(lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, optim_bits: s.OptimBits, block_size: s.BlockSize),
            OptimizerKind.ApolloMini => LowRankPresets.ApolloMini(lr: lr, update_proj_gap: s.UpdateProjGap, optim_bits: s.OptimBits, block_size: s.BlockSize),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        // Stochastic rounding (seed 0) of the compressed moments, for every group.
        if (s.StochasticRounding) defaults.MomentStorage = MomentStorage.FromOptimBits(s.OptimBits, Kernels.StateRounding.Stochastic, blockSize: s.BlockSize);
        // Stochastic rounding (seed 0) of bfloat16 weights, for every group (the model is all bf16).
        if (s.StochasticWeights) defaults.WeightRounding = WeightRounding.Stochastic();
        var full = new LowRankOptions { Projection = FullSpace.Instance };
        full.FillFrom(defaults);
        return (defaults, full);
    }

    /// <summary>
    /// A function giving the group index and complete options of a parameter by name (for the memory planner):
    /// the projected or the full-space group, and for GaLore+ the options with the head layout of <paramref name="config"/>.
    /// </summary>
    public static Func<string, long[], (int Group, LowRankOptions Options)> OptionsOf(OptimizerKind kind, double lr, LowRankSettings s, LlamaConfig? config)
    {
        var (projected, full) = GroupOptions(kind, lr, s);
        return (name, _) =>
        {
            if (!IsProjected(name)) return (1, full);
            if (kind != OptimizerKind.GaLorePlus || config?.AttentionHeadsOf(name) is not { } heads) return (0, projected);
            var options = new LowRankOptions { Projection = ((GaLorePlusProjection)projected.Projection!) with { Heads = heads } };
            options.FillFrom(projected);
            return (0, options);
        };
    }

    /// <summary>
    /// Builds the optimizer over <paramref name="model"/>'s parameters; with <paramref name="lowRankOnly"/> the AdamW
    /// baseline is LowRankOptim's (<c>LowRank.AdamW</c>, equal to TorchSharp's) instead of TorchSharp's, and so it is
    /// with compressed moments (<see cref="LowRankSettings.OptimBits"/> below 32), which TorchSharp's AdamW cannot store,
    /// and with stochastically rounded bf16 weights (<see cref="LowRankSettings.StochasticWeights"/>), which it cannot round.
    /// </summary>
    public static torch.optim.Optimizer Create(OptimizerKind kind, torch.nn.Module model, double lr, LowRankSettings s, bool lowRankOnly = false)
    {
        if (kind == OptimizerKind.AdamW)
            return lowRankOnly || s.OptimBits != 32 || s.StochasticWeights
                ? new LowRankOptimizer([new LowRankParamGroup(model.parameters())], GroupOptions(kind, lr, s).Projected) // LowRank.AdamW's options, with the storage
                : torch.optim.AdamW(model.parameters(), lr: lr, weight_decay: 0.0);
        if (kind == OptimizerKind.GaLorePlus)
        {
            var config = (model as LlamaModel)?.Config ?? throw new ArgumentException("galore-plus needs a LlamaModel (head counts per attention weight).", nameof(model));
            var (defaults, _) = GroupOptions(kind, lr, s);
            return new LowRankOptimizer(LowRank.HeadGroups(model, config.AttentionHeadsOf, (GaLorePlusProjection)defaults.Projection!, IsProjected), defaults);
        }
        var (projected, full) = GroupOptions(kind, lr, s);
        var groups = LowRank.SplitParameters(model, IsProjected);
        return new LowRankOptimizer([new LowRankParamGroup(groups[0].Parameters), new LowRankParamGroup(groups[1].Parameters, full)], projected);
    }

    /// <summary>Exact optimizer-state bytes: ours report them; TorchSharp's AdamW keeps exp_avg and exp_avg_sq per parameter.</summary>
    public static long StateBytes(torch.optim.Optimizer optimizer, torch.nn.Module model) => optimizer switch
    {
        LowRankOptimizer ours => ours.StateBytes,
        AdamW => model.parameters().Sum(p => 2 * p.numel() * p.element_size()),
        _ => throw new NotSupportedException(optimizer.GetType().Name),
    };
}

/// <summary>The low-rank options shared by every low-rank optimizer of a comparison.</summary>
/// <param name="Rank">r.</param>
/// <param name="UpdateProjGap">T, the refresh period.</param>
/// <param name="Scale">α.</param>
/// <param name="OptimBits">How the moments are stored (the presets' <c>optim_bits</c>: 32 dense, 16 bfloat16, 8 and 4 block-wise).</param>
/// <param name="StochasticRounding">Round the compressed moments stochastically (seed 0) instead of to nearest.</param>
/// <param name="StochasticWeights">Round the bfloat16 weights stochastically (seed 0; <see cref="WeightRounding"/>) instead of to nearest.</param>
/// <param name="DctMethod">How DCT-AdamW computes its products with the DCT basis (its <c>sim_type</c>).</param>
/// <param name="BlockSize">Entries per block of 8- and 4-bit moments (the presets' <c>block_size</c>; 0: the format's default).</param>
public sealed record LowRankSettings(int Rank, int UpdateProjGap, double Scale, int OptimBits = 32, bool StochasticRounding = false, bool StochasticWeights = false,
    DctTransformMethod DctMethod = DctTransformMethod.MatrixProduct, int BlockSize = 0);
