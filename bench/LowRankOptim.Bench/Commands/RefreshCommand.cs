using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `refresh`: the cost of one subspace refresh on float32 gradients — exact SVD, randomized subspace
/// iteration, DCT selection by matrix product and by fast transform, and one Online Subspace Descent basis
/// step — all in the same run, plus the amortized optimizer step (step + refresh/T) of each projector against
/// TorchSharp's AdamW step on a parameter of the same shape.
/// </summary>
public static class RefreshCommand
{
    private const string DefaultSizes = "1024x1024,4096x4096,4096x11008";
    private static TimingStatistic _statistic = TimingStatistic.Min;

    /// <summary>Which summary of the repeated timings is reported.</summary>
    public enum TimingStatistic
    {
        /// <summary>The fastest run: the least disturbed by other load on a shared machine (the default).</summary>
        Min,
        /// <summary>The median run.</summary>
        Median,
    }

    private static double Measure(Action action, int warmup, int repeats)
    {
        var times = Timing.SortedMilliseconds(action, warmup, repeats);
        return _statistic == TimingStatistic.Min ? times[0] : times[times.Length / 2];
    }

    public static Command Create()
    {
        var sizes = new Option<string>("--sizes") { Description = "Comma-separated m×n gradient shapes, e.g. 1024x1024,4096x4096.", DefaultValueFactory = _ => DefaultSizes };
        var ranks = new Option<string>("--ranks") { Description = "Comma-separated ranks r.", DefaultValueFactory = _ => "128,512" };
        var gap = new Option<int>("--update-proj-gap") { Description = "T, the refresh period the amortized step divides the refresh by.", DefaultValueFactory = _ => 200 };
        var repeats = new Option<int>("--repeats") { Description = "Timed runs per measurement (the median is reported).", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs before each measurement.", DefaultValueFactory = _ => 1 };
        var svdRepeats = new Option<int>("--svd-repeats") { Description = "Timed runs of the exact SVD (slow: ~10 s at 4096×4096 on 2 cores); no warm-up.", DefaultValueFactory = _ => 1 };
        var statistic = new Option<TimingStatistic>("--statistic") { Description = "Min (default; robust to other tenants' load) or Median of the timed runs.", DefaultValueFactory = _ => TimingStatistic.Min };
        var profile = new Option<bool>("--profile") { Description = "Also time the stages of the randomized and fast-DCT refreshes and of a projected step." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of markdown tables." };
        var jsonFile = new Option<string?>("--json-file") { Description = "Also write the JSON to this file (the markdown still goes to stdout)." };
        var command = new Command("refresh", "Time one subspace refresh per projector, and the amortized step against AdamW.")
        {
            sizes, ranks, gap, repeats, warmup, svdRepeats, statistic, profile, json, jsonFile,
        };
        command.SetAction(r =>
        {
            _statistic = r.GetValue(statistic);
            return Run(r.GetValue(sizes)!, r.GetValue(ranks)!, r.GetValue(gap), r.GetValue(repeats), r.GetValue(warmup),
                r.GetValue(svdRepeats), r.GetValue(profile), r.GetValue(json), r.GetValue(jsonFile));
        });
        return command;
    }

    private sealed record Row(long Rows, long Cols, int Rank, string Method, double RefreshMs, double StepMs, double AmortizedMs, double AdamWMs)
    {
        public double VsAdamW => AmortizedMs / AdamWMs;
    }

    private static int Run(string sizesText, string ranksText, int gap, int repeats, int warmup, int svdRepeats, bool profile, bool json, string? jsonFile)
    {
        List<(long Rows, long Cols)> sizes;
        List<int> ranks;
        try
        {
            sizes = sizesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseSize).ToList();
            ranks = ranksText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList();
        }
        catch (FormatException e)
        {
            Console.Error.WriteLine($"--sizes must look like 1024x1024,4096x4096 and --ranks like 128,512: {e.Message}");
            return 2;
        }
        if (sizes.Count == 0 || ranks.Count == 0 || sizes.Any(s => s.Rows < 1 || s.Cols < 1) || ranks.Any(r => r < 1) || gap < 1 || repeats < 1 || warmup < 0 || svdRepeats < 1)
        {
            Console.Error.WriteLine($"--sizes and --ranks need positive entries; --update-proj-gap, --repeats and --svd-repeats must be >= 1 and --warmup >= 0 " +
                                    $"(got sizes '{sizesText}', ranks '{ranksText}', gap {gap}, repeats {repeats}, warmup {warmup}, svd-repeats {svdRepeats}).");
            return 2;
        }

        WarmUpLapack();
        var rows = new List<Row>();
        var extras = new List<object>();
        var profiles = new List<(string Case, List<(string Stage, double Ms)> Stages)>();
        var runStart = CpuLoad.Sample();
        var loads = new List<object>();
        foreach (var (m, n) in sizes)
        {
            var sizeStart = CpuLoad.Sample();
            using var scope = NewDisposeScope();
            using var gen = new Generator(1234);
            var gradient = randn([m, n], generator: gen);
            var adamw = TimeAdamW(gradient, warmup, repeats);
            // The thin SVD computes every singular vector whatever r is: one timing per size.
            var svd = TimeRefresh(new SvdProjection(ranks.Max(), gap, 1.0), gradient, 0, svdRepeats);
            var s = Math.Min(m, n);
            var basisBuild = Stopwatch.StartNew();
            DctBasis.Build(s).Dispose();
            extras.Add(new { rows = m, cols = n, dct_basis_size = s, dct_basis_build_ms = basisBuild.Elapsed.TotalMilliseconds, dct_basis_bytes = s * s * 4 });
            foreach (var r in ranks)
            {
                using var inner = NewDisposeScope();
                var randomized = TimeRefresh(new RandomizedSvdProjection(r, gap, 1.0), gradient, warmup, repeats);
                var dctProduct = TimeRefresh(new DctProjection(r, gap, Method: DctTransformMethod.MatrixProduct), gradient, Math.Max(warmup, 1), repeats);
                var dctFast = TimeRefresh(new DctProjection(r, gap, Method: DctTransformMethod.FastTransform), gradient, warmup, repeats);

                // Steps between refreshes: T = int.MaxValue so that only step 1 refreshes (untimed warm-up).
                // The exact and randomized projectors share that step's code path (BasisSubspace): timed once.
                var basisStep = TimeStep(p => LowRank.GaLore([p], rank: r, update_proj_gap: int.MaxValue, scale: 1.0,
                    projector: GaLoreProjector.RandomizedSvd), gradient, warmup, repeats, out _);
                var dctStep = TimeStep(p => LowRank.DctAdamW([p], rank: r, update_proj_gap: int.MaxValue, max_shape: long.MaxValue,
                    sim_type: DctTransformMethod.FastTransform), gradient, warmup, repeats, out _);
                var osdStep = TimeStep(p => LowRank.OnlineSubspaceDescent([p], rank: r, update_proj_gap: gap, scale: 1.0), gradient, warmup, repeats, out var osd);
                var osdBasisStep = TimeOsdBasisStep((OnlinePcaSubspace)osd.States[0].Subspace!, gradient, warmup, repeats);
                osd.Dispose();

                rows.Add(new Row(m, n, r, "exact SVD", svd, basisStep, basisStep + svd / gap, adamw));
                rows.Add(new Row(m, n, r, "randomized SVD (p=8, q=2)", randomized, basisStep, basisStep + randomized / gap, adamw));
                rows.Add(new Row(m, n, r, "DCT, matrix product", dctProduct, dctStep, dctStep + dctProduct / gap, adamw));
                rows.Add(new Row(m, n, r, "DCT, fast transform", dctFast, dctStep, dctStep + dctFast / gap, adamw));
                // OSD's basis moves every step (its step includes the basis step); its one SVD is not amortized.
                rows.Add(new Row(m, n, r, "OSD basis step", osdBasisStep, osdStep, osdStep, adamw));
                if (profile) profiles.Add(($"{m}×{n}, r = {r}", Profile(gradient, r, warmup, repeats)));
            }
            if (sizeStart is not null) loads.Add(new { rows = m, cols = n, other_processes_cpu_share = CpuLoad.Sample()!.OthersShareSince(sizeStart) });
        }
        var othersShare = runStart is null ? (double?)null : CpuLoad.Sample()!.OthersShareSince(runStart);

        var document = JsonSerializer.Serialize(new
        {
            machine = MachineInfo.Describe(),
            command = "refresh " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).SkipWhile(a => a != "refresh").Skip(1)),
            update_proj_gap = gap, repeats, warmup, svd_repeats = svdRepeats, statistic = _statistic.ToString(),
            other_processes_cpu_share = othersShare, other_processes_cpu_share_by_size = loads,
            results = rows.Select(r => new
            {
                rows = r.Rows, cols = r.Cols, rank = r.Rank, method = r.Method, refresh_ms = r.RefreshMs, step_ms = r.StepMs,
                amortized_ms = r.AmortizedMs, adamw_ms = r.AdamWMs, amortized_vs_adamw = r.VsAdamW,
                refresh_speedup_vs_svd = rows.First(x => x.Rows == r.Rows && x.Cols == r.Cols && x.Rank == r.Rank).RefreshMs / r.RefreshMs,
            }),
            dct_bases = extras,
            profiles = profiles.Select(p => new { @case = p.Case, stages = p.Stages.Select(s => new { stage = s.Stage, ms = s.Ms }) }),
        }, new JsonSerializerOptions { WriteIndented = true });
        if (jsonFile is not null) File.WriteAllText(jsonFile, document);
        if (json)
        {
            Console.WriteLine(document);
            return 0;
        }

        Console.WriteLine($"Float32, {MachineInfo.Describe()}; T = {gap}; {_statistic.ToString().ToLowerInvariant()} of {repeats} runs " +
                          $"(exact SVD: {svdRepeats}) after {warmup} warm-up; other processes used {othersShare:P0} of the CPU time during the run");
        Console.WriteLine();
        Console.WriteLine("| shape | r | method | refresh (ms) | vs exact SVD | step (ms) | amortized step (ms) | AdamW step (ms) | amortized / AdamW |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            var svd = rows.First(x => x.Rows == r.Rows && x.Cols == r.Cols && x.Rank == r.Rank).RefreshMs;
            Console.WriteLine($"| {r.Rows}×{r.Cols} | {r.Rank} | {r.Method} | {r.RefreshMs:F1} | {svd / r.RefreshMs:F1}× | {r.StepMs:F1} | {r.AmortizedMs:F1} | {r.AdamWMs:F1} | {r.VsAdamW:F2}× |");
        }
        Console.WriteLine();
        Console.WriteLine("DCT basis, built once per size and shared (float64 build, then cast): " + string.Join("; ", extras.Select(e =>
        {
            var d = (dynamic)e;
            return $"s = {d.dct_basis_size}: {d.dct_basis_build_ms:F0} ms, {d.dct_basis_bytes / 1048576.0:F0} MiB";
        })));
        foreach (var (name, stages) in profiles)
        {
            Console.WriteLine();
            Console.WriteLine($"Profile, {name}:");
            Console.WriteLine();
            Console.WriteLine("| stage | ms |");
            Console.WriteLine("|---|---:|");
            foreach (var (stage, ms) in stages) Console.WriteLine($"| {stage} | {ms:F1} |");
        }
        return 0;
    }

    private static (long, long) ParseSize(string text)
    {
        var parts = text.Split('x', '×');
        if (parts.Length != 2) throw new FormatException($"'{text}' is not m×n");
        return (long.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    private static void WarmUpLapack()
    {
        using var scope = NewDisposeScope();
        var a = randn(64, 64);
        linalg.svd(a, fullMatrices: false);
        linalg.qr(a);
        fft.irfft(fft.rfft(a));
    }

    private static double TimeAdamW(Tensor gradient, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(zeros_like(gradient));
        using var opt = optim.AdamW([p], lr: 1e-3);
        return Measure(() =>
        {
            p.grad = gradient;
            opt.step();
        }, warmup, repeats);
    }

    private static double TimeRefresh(IProjectionConfig config, Tensor gradient, int warmup, int repeats)
    {
        using var subspace = config.Create(new MatrixShape(gradient.shape[0], gradient.shape[1]), ScalarType.Float32, CPU);
        long k = 1;
        return Measure(() =>
        {
            using var scope = NewDisposeScope();
            subspace.Refresh(gradient, new SubspaceContext(0, k++, 1e-3, 1e-3));
        }, warmup, repeats);
    }

    /// <summary>The median optimizer step after a first (untimed, refreshing) step.</summary>
    private static double TimeStep(Func<Parameter, LowRankOptimizer> create, Tensor gradient, int warmup, int repeats, out LowRankOptimizer optimizer)
    {
        var p = new Parameter(zeros_like(gradient));
        var opt = create(p);
        p.grad = gradient;
        opt.step();
        var ms = Measure(() =>
        {
            p.grad = gradient;
            opt.step();
        }, warmup, repeats);
        optimizer = opt;
        return ms;
    }

    /// <summary>OSD's basis step alone (loss gradient and P's optimizer step), given the step's projection.</summary>
    private static double TimeOsdBasisStep(OnlinePcaSubspace subspace, Tensor gradient, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        var projected = subspace.Project(gradient);
        long k = 2;
        return Measure(() =>
        {
            using var inner = NewDisposeScope();
            subspace.AfterUpdate(gradient, projected, new SubspaceContext(0, k++, 1e-3, 1e-3));
        }, warmup, repeats);
    }

    /// <summary>Stage timings: where a randomized refresh, a fast DCT refresh and a projected step spend their time.</summary>
    private static List<(string, double)> Profile(Tensor a, int rank, int warmup, int repeats)
    {
        var stages = new List<(string, double)>();
        double T(string name, Action action)
        {
            var ms = Measure(() =>
            {
                using var scope = NewDisposeScope();
                action();
            }, warmup, repeats);
            stages.Add((name, ms));
            return ms;
        }

        using var scope = NewDisposeScope();
        long m = a.shape[0], n = a.shape[1], width = Math.Min(rank + 8, Math.Min(m, n));
        using var gen = new Generator(5);
        var omega = randn([n, width], generator: gen);
        var (q, _) = linalg.qr(a.mm(omega));
        var (qt, _) = linalg.qr(a.t().mm(q));
        T("randomized: draw Ω (CPU generator)", () => { using var g = new Generator(7); randn([n, width], generator: g); });
        T("randomized: one A·X product (×(2q+2) = 6 per refresh)", () => a.mm(qt));
        T("randomized: one Aᵀ·X product (included above)", () => a.t().mm(q));
        T("randomized: one QR of m×ℓ (×(q+1) = 3)", () => linalg.qr(a.mm(omega)));
        T("randomized: one QR of n×ℓ (×q = 2)", () => linalg.qr(qt));
        T("randomized: small SVD of ℓ×n", () => linalg.svd(q.t().mm(a), fullMatrices: false));

        var right = m >= n;
        var dim = right ? 1L : 0L;
        T("DCT fast: transform (Makhoul FFT, permuted order)", () => DctTransform.TimesBasisPermuted(a, dim));
        var permuted = DctTransform.TimesBasisPermuted(a, dim);
        var source = DctTransform.SourcePositions(a.shape[dim], a.device);
        Tensor L1(Tensor t) => dim == 1 ? ones(1, t.shape[0]).mm(t.abs()).squeeze(0) : linalg.vector_norm(t, 1, [1L]);
        T("DCT fast: ℓ1 scores (and their reordering)", () => L1(permuted).index_select(0, source));
        var scores = L1(permuted).index_select(0, source);
        T("DCT fast: sorted top-r (CPU)", () => scores.cpu().data<float>().ToArray().Select((v, i) => (v, i)).OrderByDescending(x => x.v).ThenBy(x => x.i).Take(rank).ToArray());
        var idx = arange(rank);
        T("DCT fast: gather the r columns", () => permuted.index_select(dim, source.index_select(0, idx)));

        var (basis, _) = linalg.qr(randn(right ? n : m, rank));
        var p = right ? basis.t().contiguous() : basis;
        var r = right ? a.mm(p.t()) : p.t().mm(a);
        T("step: project (G·Pᵀ or PᵀG)", () => { if (right) a.mm(p.t()); else p.t().mm(a); });
        var target = zeros_like(a);
        T("step: back-project (addmm_ into W)", () => { if (right) target.addmm_(r, p, beta: 1, alpha: -1e-3f); else target.addmm_(p, r, beta: 1, alpha: -1e-3f); });
        var ea = zeros_like(r);
        var es = zeros_like(r);
        T("step: Adam on the r-sized moments", () => LowRankOptim.Kernels.TorchKernels.Instance.AdamDirection(r, ea, es, new LowRankOptim.Kernels.AdamScalars(0.9, 0.999, 1e-6, 1.0)));
        return stages;
    }
}
