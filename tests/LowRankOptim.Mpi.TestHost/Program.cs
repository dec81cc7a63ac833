using LowRankOptim;
using LowRankOptim.Mpi;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

// Usage: mpiexec.mpich -n 2 dotnet LowRankOptim.Mpi.TestHost.dll <train|mismatch|stuck|dead> <folder> [timeout seconds]
// Rank 0 prints "OK ..." / "FAIL ..." lines; the exit code is 0 only when every check passed.
var scenario = args.Length > 0 ? args[0] : "train";
var folder = args.Length > 1 ? args[1] : Directory.GetCurrentDirectory();
var timeout = TimeSpan.FromSeconds(args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 120);
torch.set_num_threads(1); // two ranks share two cores; one thread each also keeps every op's order fixed
using var comm = MpiCommunicator.Initialize(timeout, bucketBytes: 256);
return scenario switch
{
    "train" => Scenarios.Train(comm, folder),
    "mismatch" => Scenarios.Mismatch(comm, folder),
    "stuck" => Scenarios.Stuck(comm),
    "dead" => Scenarios.Dead(comm),
    _ => throw new ArgumentException($"unknown scenario '{scenario}'"),
};

internal static class Scenarios
{
    private const int Steps = 20, SaveAt = 10, PerRank = 4;

    /// <summary>One row per kind of exchange: projected R, R plus residual entries, the whole G every step, full space.</summary>
    private static readonly (string Name, Func<nn.Module, LowRankOptimizer> Create)[] Methods =
    [
        ("galore", m => LowRank.GaLore(LowRank.SplitParameters(m), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1)),
        ("galore-plus-residual", m => LowRank.GaLorePlus(m, name => name == "fc1" ? AttentionHeads.QueryKeyValue(4) : null, lr: 0.01, rank: 2,
            update_proj_gap: 4, seed: 9, residual_density: 0.3, residual_warmup: 2)),
        ("apollo", m => LowRank.Apollo(LowRank.SplitParameters(m), lr: 0.01, weight_decay: 0.05, rank: 3, update_proj_gap: 3)),
        ("adamw", m => LowRank.AdamW(m.parameters(), lr: 0.01, weight_decay: 0.01)),
    ];

    private static Sequential Mlp(long seed, int hidden = 20)
    {
        var model = nn.Sequential(("fc1", nn.Linear(12, hidden)), ("act", nn.Tanh()), ("fc2", nn.Linear(hidden, 6)));
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in model.parameters())
            using (var v = randn(p.shape, generator: gen).mul_(0.3)) p.copy_(v);
        return model;
    }

    /// <summary>The global batch of step k (2·PerRank rows; rank r takes rows r·PerRank …).</summary>
    private static (Tensor X, Tensor Y) Batch(int step, int size)
    {
        using var gen = new Generator((ulong)(1000 + step));
        return (randn([PerRank * size, 12], generator: gen), randn([PerRank * size, 6], generator: gen));
    }

    private static void StepOn(Sequential model, LowRankOptimizer opt, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        nn.functional.mse_loss(model.call(x), y).backward();
        opt.step();
        opt.zero_grad();
    }

    private static Tensor[] Snapshot(nn.Module model) => model.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();

    private static bool Identical(Tensor a, Tensor b) => a.bytes.ToArray().AsSpan().SequenceEqual(b.bytes.ToArray());

    /// <summary>Trains data parallel; returns the weights after every step. Checks after each step that every rank's weights equal rank 0's bit for bit.</summary>
    private static List<Tensor[]> Distributed(ICommunicator comm, string method, bool shard, List<string> failures, string? checkpoint, out DataParallel dp, out long[] stateBytes, int from = 0, Tensor[]? start = null)
    {
        var create = Methods.Single(m => m.Name == method).Create;
        using var model = Mlp(comm.Rank == 0 ? 7 : 70 + comm.Rank); // other ranks start elsewhere: rank 0's weights are broadcast
        if (start is not null)
            using (no_grad())
                foreach (var (p, v) in model.parameters().Zip(start)) p.copy_(v);
        using var opt = create(model);
        dp = opt.Distribute(comm, shard);
        if (from > 0) dp.LoadStateDict(checkpoint!);
        var weights = new List<Tensor[]>();
        for (var k = from + 1; k <= Steps; k++)
        {
            var (x, y) = Batch(k, comm.Size);
            using (x) using (y) StepOn(model, opt, x.narrow(0, comm.Rank * PerRank, PerRank), y.narrow(0, comm.Rank * PerRank, PerRank));
            var mine = Snapshot(model);
            var reference = mine.Select(t => t.clone()).ToArray();
            comm.Broadcast(reference, 0);
            for (var i = 0; i < mine.Length; i++)
                if (!Identical(mine[i], reference[i])) failures.Add($"{method} (sharded {shard}): rank {comm.Rank} parameter {i} differs from rank 0 after step {k}");
            foreach (var t in reference) t.Dispose();
            weights.Add(mine);
            if (k == SaveAt && checkpoint is not null && from == 0) dp.SaveStateDict(checkpoint);
        }
        stateBytes = dp.StateBytesPerRank();
        return weights;
    }

    public static int Train(ICommunicator comm, string folder)
    {
        var failures = new List<string>();
        Directory.CreateDirectory(folder);
        foreach (var (method, create) in Methods)
        {
            // The single-process reference with the joint batch (every rank computes it; rank 0 reports).
            var single = new List<Tensor[]>();
            using (var model = Mlp(7))
            using (var opt = create(model))
            {
                for (var k = 1; k <= Steps; k++)
                {
                    var (x, y) = Batch(k, comm.Size);
                    using (x) using (y) StepOn(model, opt, x, y);
                    single.Add(Snapshot(model));
                    if (k == SaveAt && comm.Rank == 0) opt.save_state_dict(Path.Combine(folder, $"{method}-single.ckpt"));
                }
            }
            var replicated = Distributed(comm, method, false, failures, null, out var replicatedDp, out var replicatedBytes);
            var checkpoint = Path.Combine(folder, $"{method}.ckpt");
            var sharded = Distributed(comm, method, true, failures, checkpoint, out var shardedDp, out var perRank);
            if (perRank.Sum() != replicatedBytes[0] && method == "adamw") failures.Add($"{method}: sharded state {perRank.Sum()} B in all ≠ replicated {replicatedBytes[0]} B");
            double worst = 0;
            for (var k = 0; k < Steps; k++)
                for (var i = 0; i < single[k].Length; i++)
                {
                    if (!Identical(sharded[k][i], replicated[k][i])) failures.Add($"{method}: sharded differs from replicated at step {k + 1}, parameter {i}");
                    using var diff = (replicated[k][i] - single[k][i]).abs().max();
                    using var bound = single[k][i].abs().max().mul(2e-4).add(2e-5);
                    worst = Math.Max(worst, diff.item<float>() / bound.item<float>());
                }
            if (worst > 1) failures.Add($"{method}: 2 ranks × b vs 1 process × 2b: worst difference {worst:F2}× the tolerance");

            // The gathered checkpoint loads on 2 ranks (again sharded) and resumes bit-exactly.
            var resumed = Distributed(comm, method, true, failures, checkpoint, out _, out _, from: SaveAt, start: sharded[SaveAt - 1]);
            for (var k = 0; k < resumed.Count; k++)
                for (var i = 0; i < resumed[k].Length; i++)
                    if (!Identical(resumed[k][i], sharded[SaveAt + k][i])) failures.Add($"{method}: resumed from the gathered checkpoint, step {SaveAt + k + 1} parameter {i} differs");
            if (comm.Rank == 0)
            {
                Console.WriteLine($"OK {method}: {Steps} steps on {comm.Size} ranks; worst |2 ranks − 1 process| = {worst:F3}× tolerance; " +
                                  $"optimizer-state bytes per rank: sharded [{string.Join(", ", perRank)}], replicated [{string.Join(", ", replicatedBytes)}]");
                Console.WriteLine($"TRAFFIC {method} replicated: {replicatedDp.Traffic}");
                Console.WriteLine($"TRAFFIC {method} sharded: {shardedDp.Traffic}");
            }
            foreach (var t in single.Concat(replicated).Concat(sharded).Concat(resumed).SelectMany(w => w)) t.Dispose();
        }
        // Every rank's failures reach rank 0's report through the exit code and its own output.
        foreach (var f in failures) Console.WriteLine($"FAIL rank {comm.Rank}: {f}");
        return failures.Count == 0 ? 0 : 1;
    }

    /// <summary>Rank 1 builds a wider hidden layer: Distribute must throw on every rank, naming the difference.</summary>
    public static int Mismatch(ICommunicator comm, string folder)
    {
        using var model = Mlp(7, hidden: comm.Rank == 1 ? 21 : 20);
        using var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 3);
        try
        {
            opt.Distribute(comm);
            Console.WriteLine($"FAIL rank {comm.Rank}: no mismatch was detected");
            return 1;
        }
        catch (DataParallelMismatchException e)
        {
            // A file per rank: the ranks' lines on mpiexec's output may interleave.
            File.WriteAllText(Path.Combine(folder, $"mismatch-rank{comm.Rank}.txt"), e.Message);
            Console.WriteLine($"MISMATCH rank {comm.Rank}: {e.Message}");
            return 4;
        }
    }

    /// <summary>Rank 1 never reaches the first collective: rank 0's watchdog must end it after the timeout.</summary>
    public static int Stuck(ICommunicator comm)
    {
        if (comm.Rank == 1) Thread.Sleep(TimeSpan.FromMinutes(10));
        using var model = Mlp(7);
        using var opt = LowRank.AdamW(model.parameters(), lr: 0.01);
        opt.Distribute(comm);
        Console.WriteLine($"FAIL rank {comm.Rank}: the collective completed without rank 1");
        return 1;
    }

    /// <summary>Rank 1 dies before the first collective: mpiexec must end rank 0 instead of leaving it waiting.</summary>
    public static int Dead(ICommunicator comm)
    {
        if (comm.Rank == 1) Environment.Exit(9);
        using var model = Mlp(7);
        using var opt = LowRank.AdamW(model.parameters(), lr: 0.01);
        opt.Distribute(comm);
        Console.WriteLine($"FAIL rank {comm.Rank}: the collective completed without rank 1");
        return 1;
    }
}
