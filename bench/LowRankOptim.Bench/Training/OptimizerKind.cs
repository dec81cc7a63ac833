using LowRankOptim.Projection;
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
        OptimizerKind.AdamW => 3e-3,
        OptimizerKind.GaLore => 1e-2,
        OptimizerKind.GaLoreAdafactor => 1e-2,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Builds the optimizer over <paramref name="model"/>'s parameters.</summary>
    public static torch.optim.Optimizer Create(OptimizerKind kind, torch.nn.Module model, double lr, LowRankSettings s) => kind switch
    {
        OptimizerKind.AdamW => torch.optim.AdamW(model.parameters(), lr: lr, weight_decay: 0.0),
        OptimizerKind.GaLore => LowRank.GaLore(LowRank.SplitParameters(model), lr: lr, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale),
        OptimizerKind.GaLoreAdafactor => LowRank.GaLoreAdafactor(LowRank.SplitParameters(model), lr: lr, relative_step: false, scale_parameter: false,
            beta1: 0.9, rank: s.Rank, update_proj_gap: s.UpdateProjGap, scale: s.Scale),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Exact optimizer-state bytes: ours report them; TorchSharp's AdamW keeps exp_avg and exp_avg_sq per parameter.</summary>
    public static long StateBytes(torch.optim.Optimizer optimizer, torch.nn.Module model) => optimizer switch
    {
        LowRankOptimizer ours => ours.StateBytes,
        AdamW => model.parameters().Sum(p => 2 * p.numel() * p.element_size()),
        _ => throw new NotSupportedException(optimizer.GetType().Name),
    };
}

/// <summary>The low-rank options shared by every low-rank optimizer of a comparison.</summary>
public sealed record LowRankSettings(int Rank, int UpdateProjGap, double Scale);
