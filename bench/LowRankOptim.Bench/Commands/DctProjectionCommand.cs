using System.CommandLine;
using System.Globalization;
using LowRankOptim.Bench.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `dct-projection`: one DCT projection and back-projection (Project then ProjectBack) on a float32 m×n gradient,
/// projected on the right (s = n), with the gathered-columns matrix product (<see cref="DctTransformMethod.MatrixProduct"/>)
/// and with the fast transform (<see cref="DctTransformMethod.FastTransformProjection"/>), timed interleaved round by
/// round; plus each method's largest error against a float64 product with the float64 basis.
/// </summary>
public static class DctProjectionCommand
{
    public static Command Create()
    {
        var sizes = new Option<string>("--sizes") { Description = "Comma-separated m×n gradient shapes, projected on the right (s = n).", DefaultValueFactory = _ => "4096x4096,11008x4096" };
        var ranks = new Option<string>("--ranks") { Description = "Comma-separated ranks r.", DefaultValueFactory = _ => "256,1024" };
        var repeats = new Option<int>("--repeats") { Description = "Timed interleaved rounds (the median is reported).", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed rounds first.", DefaultValueFactory = _ => 1 };
        var command = new Command("dct-projection", "Time DCT Project + ProjectBack by matrix product and by fast transform, interleaved.") { sizes, ranks, repeats, warmup };
        command.SetAction(r => Run(r.GetValue(sizes)!, r.GetValue(ranks)!, r.GetValue(repeats), r.GetValue(warmup)));
        return command;
    }

    private static int Run(string sizesText, string ranksText, int repeats, int warmup)
    {
        var shapes = sizesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => t.Split('x', '×')).ToList();
        var ranks = ranksText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToList();
        if (shapes.Any(p => p.Length != 2) || ranks.Any(r => r < 1) || repeats < 1 || warmup < 0)
        {
            Console.Error.WriteLine("--sizes like 4096x4096,11008x4096, --ranks like 256,1024, --repeats >= 1, --warmup >= 0.");
            return 2;
        }
        var start = CpuLoad.Sample();
        Console.WriteLine($"Float32, right side (s = n); median of {repeats} interleaved rounds after {warmup} warm-up; {MachineInfo.Describe()}");
        Console.WriteLine();
        Console.WriteLine("Times: Project + ProjectBack (a new m×n result), and Project + AddProjectedBack (into W, as a step does). Errors: max |Δ| / max |reference|");
        Console.WriteLine("over R and the back-projection, against float64 (G·Q, R·Qᵀ), and between the two float32 methods.");
        Console.WriteLine();
        Console.WriteLine("| m×n | s | r | product: P + PB (ms) | fast: P + PB (ms) | speed-up | product: P + APB (ms) | fast: P + APB (ms) | speed-up | error, product | error, fast | fast vs product | block rows |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var shape in shapes)
        {
            long m = long.Parse(shape[0], CultureInfo.InvariantCulture), n = long.Parse(shape[1], CultureInfo.InvariantCulture);
            foreach (var rank in ranks)
            {
                using var scope = NewDisposeScope();
                using var gen = new Generator(7);
                var matrix = new MatrixShape(m, n);
                var g = randn([m, n], generator: gen);
                using var product = (DctSubspace)new DctProjection(rank, Type: ProjectionType.Right).Create(matrix, ScalarType.Float32, CPU);
                using var fast = (DctSubspace)new DctProjection(rank, Type: ProjectionType.Right, Method: DctTransformMethod.FastTransformProjection)
                    .Create(matrix, ScalarType.Float32, CPU);
                var context = new SubspaceContext(0, 1, 1e-3, 1e-3);
                product.Refresh(g, context);
                // Near-equal scores of a Gaussian G can swap places between the two methods' roundings: give both the same columns.
                fast.State.Tensor("dct_indices").Set(tensor(product.Indices!));

                // ProjectBack returns a new m×n tensor (fresh pages each call); a step adds into W instead (AddProjectedBack).
                var target = zeros_like(g);
                var medians = Timing.InterleavedMedianMilliseconds([
                    () => { using var s = NewDisposeScope(); product.ProjectBack(product.Project(g)); },
                    () => { using var s = NewDisposeScope(); fast.ProjectBack(fast.Project(g)); },
                    () => { using var s = NewDisposeScope(); product.AddProjectedBack(target, product.Project(g), -1e-3); },
                    () => { using var s = NewDisposeScope(); fast.AddProjectedBack(target, fast.Project(g), -1e-3); },
                ], warmup, repeats);

                // Errors relative to the largest entry of a float64 reference (G·Q and R·Qᵀ with the float64 basis).
                var q = DctBasis.Build(n, ScalarType.Float64).index_select(1, tensor(product.Indices!));
                var g64 = g.to(ScalarType.Float64);
                var exactR = g64.mm(q);
                var exactBack = exactR.mm(q.t());
                double Relative(Tensor a, Tensor reference) => a.to(ScalarType.Float64).sub(reference).abs().max().item<double>() / reference.abs().max().item<double>();
                var (rp, rf) = (product.Project(g), fast.Project(g));
                var (bp, bf) = (product.ProjectBack(exactR.to(ScalarType.Float32)), fast.ProjectBack(exactR.to(ScalarType.Float32)));
                var productError = Math.Max(Relative(rp, exactR), Relative(bp, exactBack));
                var fastError = Math.Max(Relative(rf, exactR), Relative(bf, exactBack));
                var between = Math.Max(Relative(rf, rp.to(ScalarType.Float64)), Relative(bf, bp.to(ScalarType.Float64)));
                Console.WriteLine($"| {m}×{n} | {n} | {rank} | {medians[0]:F1} | {medians[1]:F1} | {medians[0] / medians[1]:F2}× | " +
                                  $"{medians[2]:F1} | {medians[3]:F1} | {medians[2] / medians[3]:F2}× | {productError:E1} | {fastError:E1} | {between:E1} | " +
                                  $"{DctTransform.BlockLines(n, rank, ScalarType.Float32)} |");
            }
        }
        if (start is not null)
            Console.WriteLine($"\nOther processes used {CpuLoad.Sample()!.OthersShareSince(start):P0} of the CPU time during the run.");
        return 0;
    }
}
