using TorchSharp.Modules;

namespace LowRankOptim.Tests.Support;

/// <summary>
/// How each fixture <c>algorithm</c> maps onto a <see cref="LowRank"/> factory: the reference's arguments go to
/// the factory's arguments of the same name, so the conventions the factory chooses (ε placement, decay order,
/// the basis optimizer of Online Subspace Descent) are checked against the reference's numbers. Param groups
/// map onto <see cref="LowRankParamGroup"/>s: their <c>lr</c> and <c>weight_decay</c> override the factory's, and
/// (galore_torch, OSD) a group without <c>rank</c> trains in the full space.
/// </summary>
public static class FixtureCatalog
{
    /// <summary>
    /// Builds the optimizer a fixture describes over <paramref name="parameters"/> (by fixture name), through the
    /// replay of the catalog row that declares the fixture's algorithm (<see cref="CatalogMethod.Replays"/>).
    /// </summary>
    /// <param name="f">The fixture.</param>
    /// <param name="parameters">Its parameters by name.</param>
    /// <param name="kernel">The kernel of rules that have one (SMMF).</param>
    /// <param name="dctMethod">How DCT cases compute G·C (the fixtures record the matrix product's results; the fast transform must reproduce them).</param>
    public static LowRankOptimizer Build(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters,
        KernelPreference kernel = KernelPreference.Auto, DctTransformMethod dctMethod = DctTransformMethod.MatrixProduct)
    {
        var replay = MethodCatalog.All.Select(m => m.Replays).SingleOrDefault(r => r is not null && r.Algorithms.Contains(f.Algorithm))
            ?? throw new NotSupportedException($"fixture {f.Name}: no catalog method replays algorithm '{f.Algorithm}'");
        return replay.Build(f, parameters, new ReplayOptions(kernel, dctMethod));
    }

    // Hugging Face's AdamW is galore_torch's AdamW without a projected group.
    internal static LowRankOptimizer GaLore(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, ReplayOptions options)
    {
        var o = f.Optimizer;
        var p = ProjectedGroup(f);
        return LowRank.GaLore(Groups(f, parameters), lr: (double)o["lr"]!, beta1: (double)o["betas"]![0]!, beta2: (double)o["betas"]![1]!,
            eps: (double)o["eps"]!, weight_decay: (double)o["weight_decay"]!, correct_bias: (bool)o["correct_bias"]!,
            rank: p?.Rank ?? 128, update_proj_gap: p?.Gap ?? 200, scale: p?.Scale ?? 0.25, proj_type: p?.Type ?? ProjectionType.Std);
    }

    internal static LowRankOptimizer OnlineSubspaceDescent(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, ReplayOptions options)
    {
        var o = f.Optimizer;
        var p = ProjectedGroup(f) ?? throw new NotSupportedException($"fixture {f.Name}: no projected group");
        // OSD's "continuous" is its only projection; P's optimizer is left to the factory's default.
        if (p.ProjType != "continuous") throw new NotSupportedException($"fixture {f.Name}: OSD proj_type '{p.ProjType}'");
        return LowRank.OnlineSubspaceDescent(Groups(f, parameters), lr: (double)o["lr"]!, beta1: (double)o["betas"]![0]!, beta2: (double)o["betas"]![1]!,
            eps: (double)o["eps"]!, weight_decay: (double)o["weight_decay"]!, correct_bias: (bool)o["correct_bias"]!,
            rank: p.Rank, update_proj_gap: p.Gap, scale: p.Scale);
    }

    internal static LowRankOptimizer GaLoreAdafactor(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, ReplayOptions options)
    {
        var o = f.Optimizer;
        var p = ProjectedGroup(f);
        return LowRank.GaLoreAdafactor(Groups(f, parameters), lr: (double?)o["lr"], eps1: (double)o["eps"]![0]!, eps2: (double)o["eps"]![1]!,
            clip_threshold: (double)o["clip_threshold"]!, decay_rate: (double)o["decay_rate"]!, beta1: (double?)o["beta1"],
            weight_decay: (double)o["weight_decay"]!, scale_parameter: (bool)o["scale_parameter"]!, relative_step: (bool)o["relative_step"]!,
            warmup_init: (bool)o["warmup_init"]!,
            rank: p?.Rank ?? 128, update_proj_gap: p?.Gap ?? 200, scale: p?.Scale ?? 0.25, proj_type: p?.Type ?? ProjectionType.Std);
    }

    internal static LowRankOptimizer Smmf(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, ReplayOptions options)
    {
        var o = f.Optimizer;
        return LowRank.Smmf(Groups(f, parameters), lr: (double)o["lr"]!, beta: (double?)o["beta"], eps: (double)o["eps"]!,
            weight_decay: (double)o["weight_decay"]!, decay_rate: (double)o["decay_rate"]!, growth_rate: (double)o["growth_rate"]!,
            vector_reshape: (bool)o["vector_reshape"]!,
            weight_decay_mode: (string)o["weight_decay_mode"]! switch
            {
                "adamw" => SmmfWeightDecayMode.AdamW,
                // The reference's "adam" mode is a no-op (fixtures README); ours is L2, so no fixture uses it.
                var mode => throw new NotSupportedException($"fixture {f.Name}: weight_decay_mode '{mode}'"),
            },
            kernel: options.Kernel);
    }

    // DCT-AdamW's options are optimizer-wide: every group projects its matrices (1-D tensors stay in the full space).
    internal static LowRankOptimizer DctAdamW(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, ReplayOptions options)
    {
        var o = f.Optimizer;
        if ((string)o["proj"]! != "dct") throw new NotSupportedException($"fixture {f.Name}: proj '{o["proj"]}' (only 'dct')");
        if ((bool)o["rotate_subspace"]! || (bool)o["use_ef"]!) throw new NotSupportedException($"fixture {f.Name}: rotate_subspace / use_ef");
        // The reference's 'makhoul' transforms with the transposed basis; only its 'matmul' basis is implemented.
        if ((string)o["sim_type"]! != "matmul") throw new NotSupportedException($"fixture {f.Name}: sim_type '{o["sim_type"]}'");
        return LowRank.DctAdamW(Groups(f, parameters, fullSpaceWithoutRank: false), lr: (double)o["lr"]!, weight_decay: (double)o["weight_decay"]!,
            rank: (int)o["rank"]!, update_proj_gap: (int)o["update_proj_gap"]!, sim_type: options.DctMethod, ell_norm: (double)o["ell_norm"]!,
            max_shape: (long)o["max_shape"]!, beta1: (double)o["betas"]![0]!, beta2: (double)o["betas"]![1]!, eps: (double)o["eps"]!);
    }

    /// <summary>
    /// The fixture's param groups: their lr and weight_decay override the factory's; with
    /// <paramref name="fullSpaceWithoutRank"/>, a group without <c>rank</c> trains in the full space (galore_torch).
    /// </summary>
    internal static List<LowRankParamGroup> Groups(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, bool fullSpaceWithoutRank = true) =>
        f.Groups.Select(g => new LowRankParamGroup(
            g["params"]!.AsArray().Select(n => parameters[(string)n!]),
            new LowRankOptions
            {
                LearningRate = (double?)g["lr"],
                WeightDecay = (double?)g["weight_decay"],
                Projection = fullSpaceWithoutRank && !g.ContainsKey("rank") ? FullSpace.Instance : null,
            })).ToList();

    internal sealed record Projected(int Rank, int Gap, double Scale, string ProjType)
    {
        public ProjectionType Type => ProjectionTypeOf(ProjType);
    }

    /// <summary>A reference's <c>proj_type</c> string as a <see cref="ProjectionType"/>.</summary>
    internal static ProjectionType ProjectionTypeOf(string projType) => projType switch
    {
        "std" => ProjectionType.Std,
        "reverse_std" => ProjectionType.ReverseStd,
        "left" => ProjectionType.Left,
        "right" => ProjectionType.Right,
        "full" => ProjectionType.Full,
        var t => throw new NotSupportedException($"unknown proj_type '{t}'"),
    };

    /// <summary>
    /// The projection arguments of the fixture's group with <c>rank</c> (they become the factory's), or null when no
    /// group is projected. The factories take one projection, so a fixture with two differently projected groups is refused.
    /// </summary>
    internal static Projected? ProjectedGroup(GoldenFixture f)
    {
        var projected = f.Groups.Where(g => g.ContainsKey("rank"))
            .Select(g => new Projected((int)g["rank"]!, (int)g["update_proj_gap"]!, (double)g["scale"]!, (string)g["proj_type"]!))
            .Distinct().ToList();
        return projected.Count <= 1 ? projected.SingleOrDefault()
            : throw new NotSupportedException($"fixture {f.Name}: {projected.Count} different projected groups (the factories take one projection)");
    }
}

/// <summary>How a replay runs: the kernel of rules that have one, and how DCT computes G·C.</summary>
public readonly record struct ReplayOptions(KernelPreference Kernel, DctTransformMethod DctMethod);

/// <summary>A catalog row's golden-fixture replay: the fixture algorithms it reproduces and how it builds the optimizer.</summary>
/// <param name="Algorithms">The fixtures' <c>algorithm</c> keys.</param>
/// <param name="Build">Builds the optimizer a fixture describes through the row's factory.</param>
public sealed record FixtureReplay(IReadOnlyList<string> Algorithms, Func<GoldenFixture, IReadOnlyDictionary<string, Parameter>, ReplayOptions, LowRankOptimizer> Build);
