using System.CommandLine;
using LowRankOptim.Bench.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `smmf`: SMMF's optimizer-state bytes against TorchSharp's AdamW (a square matrix, a small conv net,
/// LLaMA-60M's parameter shapes), and the step time of the fused CPU kernel, the TorchSharp-ops reference
/// path and TorchSharp's AdamW, side by side in one run. Every byte count is read from the optimizers
/// built over real parameters of those shapes; every time is measured.
/// </summary>
public static class SmmfCommand
{
    public static Command Create()
    {
        var size = new Option<int>("--size") { Description = "Side of the square matrix.", DefaultValueFactory = _ => 4096 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps before timing.", DefaultValueFactory = _ => 2 };
        var repeats = new Option<int>("--repeats") { Description = "Timed steps; the median is reported.", DefaultValueFactory = _ => 7 };
        var skipModel = new Option<bool>("--skip-model-timing") { Description = "Time only the square matrix, not the whole LLaMA-60M parameter set." };
        var command = new Command("smmf", "SMMF state bytes and step time vs TorchSharp AdamW (fused kernel and reference path).")
        {
            size, warmup, repeats, skipModel,
        };
        command.SetAction(r => Run(r.GetValue(size), r.GetValue(warmup), r.GetValue(repeats), r.GetValue(skipModel)));
        return command;
    }

    /// <summary>A named parameter shape.</summary>
    internal sealed record Shape(string Name, long[] Dims);

    /// <summary>LLaMA-60M (GaLore's configs/llama_60m.json): hidden 512, intermediate 1376, 8 heads, 8 layers, vocab 32000, untied embeddings.</summary>
    internal static IReadOnlyList<Shape> Llama60M()
    {
        const long hidden = 512, intermediate = 1376, vocab = 32000, layers = 8;
        var shapes = new List<Shape> { new("embed_tokens", [vocab, hidden]) };
        for (var l = 0; l < layers; l++)
        {
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
                shapes.Add(new($"layers.{l}.self_attn.{proj}", [hidden, hidden])); // 8 heads × 64 = 512
            shapes.Add(new($"layers.{l}.mlp.gate_proj", [intermediate, hidden]));
            shapes.Add(new($"layers.{l}.mlp.up_proj", [intermediate, hidden]));
            shapes.Add(new($"layers.{l}.mlp.down_proj", [hidden, intermediate]));
            shapes.Add(new($"layers.{l}.input_layernorm", [hidden]));
            shapes.Add(new($"layers.{l}.post_attention_layernorm", [hidden]));
        }
        shapes.Add(new("norm", [hidden]));
        shapes.Add(new("lm_head", [vocab, hidden]));
        return shapes;
    }

    /// <summary>A small CIFAR-style conv net: three 3×3 conv blocks with batch norm, global pooling, a linear classifier.</summary>
    internal static IReadOnlyList<Shape> SmallConvNet() =>
    [
        new("conv1.weight", [32, 3, 3, 3]), new("conv1.bias", [32]), new("bn1.weight", [32]), new("bn1.bias", [32]),
        new("conv2.weight", [64, 32, 3, 3]), new("conv2.bias", [64]), new("bn2.weight", [64]), new("bn2.bias", [64]),
        new("conv3.weight", [128, 64, 3, 3]), new("conv3.bias", [128]), new("bn3.weight", [128]), new("bn3.bias", [128]),
        new("fc.weight", [10, 128]), new("fc.bias", [10]),
    ];

    private static int Run(int size, int warmup, int repeats, bool skipModel)
    {
        if (size < 1 || warmup < 0 || repeats < 1)
        {
            Console.Error.WriteLine($"--size and --repeats must be >= 1 and --warmup >= 0 (got {size}, {repeats}, {warmup}).");
            return 2;
        }
        Console.WriteLine($"SMMF vs TorchSharp AdamW — {MachineInfo.Describe()}");
        Console.WriteLine();

        var llama = Llama60M();
        var sets = new (string Name, IReadOnlyList<Shape> Shapes)[]
        {
            ($"{size}×{size} matrix", [new("w", [size, size])]),
            ("small conv net (14 tensors)", SmallConvNet()),
            ("LLaMA-60M, matrices only", llama.Where(s => s.Dims.Length == 2).ToList()),
            ("LLaMA-60M, all parameters", llama),
        };
        Console.WriteLine("### Optimizer state (bytes of state tensors, read from the built optimizers)");
        Console.WriteLine();
        Console.WriteLine("| parameters | tensors | elements | AdamW state | SMMF state | SMMF / AdamW | reduction | SMMF with 1-byte signs (reference layout) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, shapes) in sets)
        {
            using var scope = NewDisposeScope();
            var parameters = shapes.Select(s => new Parameter(empty(s.Dims))).ToList();
            var elements = parameters.Sum(p => p.numel());
            long adamBytes;
            using (var adamw = optim.AdamW(parameters)) adamBytes = AdamWStateBytes(adamw);
            long smmfBytes, byteSignBytes;
            using (var smmf = LowRank.Smmf(parameters))
            {
                smmfBytes = smmf.StateBytes;
                // The reference keeps the sign as torch.bool: N bytes instead of ⌈N/8⌉.
                byteSignBytes = smmfBytes + parameters.Sum(p => p.numel() - (p.numel() + 7) / 8);
            }
            Console.WriteLine($"| {name} | {parameters.Count} | {elements:N0} | {adamBytes:N0} | {smmfBytes:N0} | {(double)smmfBytes / adamBytes:P2} | " +
                              $"{1 - (double)smmfBytes / adamBytes:P2} | {byteSignBytes:N0} ({1 - (double)byteSignBytes / adamBytes:P1} less) |");
        }
        Console.WriteLine();
        Console.WriteLine("Shapes: small conv net " + string.Join(", ", SmallConvNet().Select(s => $"{s.Name} {Format(s.Dims)}")) + ".");
        Console.WriteLine("LLaMA-60M: embed_tokens and lm_head [32000, 512]; per layer (×8) q/k/v/o_proj [512, 512], gate/up_proj [1376, 512], " +
                          "down_proj [512, 1376], input/post_attention_layernorm [512]; final norm [512].");
        Console.WriteLine();

        Console.WriteLine($"### Step time (median of {repeats} interleaved rounds after {warmup} warm-up rounds, float32, CPU)");
        Console.WriteLine();
        Console.WriteLine("| parameters | TorchSharp AdamW (ms) | SMMF fused kernel (ms) | SMMF reference path (ms) | fused / AdamW | reference / AdamW |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        var timed = new List<(string, IReadOnlyList<Shape>)> { sets[0] };
        if (!skipModel) timed.Add(sets[3]);
        foreach (var (name, shapes) in timed)
        {
            var times = TimeSteps(shapes,
            [
                ps => optim.AdamW(ps, lr: 1e-3),
                ps => LowRank.Smmf(ps, lr: 1e-3, kernel: KernelPreference.Auto),
                ps => LowRank.Smmf(ps, lr: 1e-3, kernel: KernelPreference.Reference),
            ], warmup, repeats);
            var (adamw, fused, reference) = (times[0], times[1], times[2]);
            Console.WriteLine($"| {name} | {adamw:F1} | {fused:F1} | {reference:F1} | {fused / adamw:F2}× | {reference / adamw:F2}× |");
        }
        return 0;
    }

    /// <summary>
    /// Builds each optimizer over its own fresh parameters of <paramref name="shapes"/> (same values, same
    /// fixed gradients) and times one step of each in interleaved rounds (the order rotates every round),
    /// so that a slow spell of the machine hits every method alike. Returns each method's median in ms.
    /// </summary>
    private static double[] TimeSteps(IReadOnlyList<Shape> shapes, IReadOnlyList<Func<List<Parameter>, optim.Optimizer>> creates, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(42);
        var initial = shapes.Select(s => randn(s.Dims, generator: gen).mul_(0.02)).ToList();
        var gradients = shapes.Select(s => randn(s.Dims, generator: gen).mul_(1e-3)).ToList();
        var runs = creates.Select(create =>
        {
            var parameters = initial.Select(t => new Parameter(t.clone())).ToList();
            return (Parameters: parameters, Optimizer: create(parameters));
        }).ToList();
        try
        {
            void Step(int m)
            {
                var (parameters, optimizer) = runs[m];
                for (var i = 0; i < parameters.Count; i++) parameters[i].grad = gradients[i];
                optimizer.step();
            }
            for (var w = 0; w < warmup; w++)
                for (var m = 0; m < runs.Count; m++) Step(m);
            var times = runs.Select(_ => new double[repeats]).ToArray();
            for (var r = 0; r < repeats; r++)
                for (var o = 0; o < runs.Count; o++)
                {
                    var m = (r + o) % runs.Count;
                    var clock = System.Diagnostics.Stopwatch.StartNew();
                    Step(m);
                    times[m][r] = clock.Elapsed.TotalMilliseconds;
                }
            return times.Select(t => t.Order().ElementAt(repeats / 2)).ToArray();
        }
        finally
        {
            foreach (var (_, optimizer) in runs) optimizer.Dispose();
        }
    }

    /// <summary>Σ numel × element size over TorchSharp AdamW's per-parameter state tensors (allocated at construction).</summary>
    private static long AdamWStateBytes(TorchSharp.Modules.AdamW adamw)
    {
        long bytes = 0;
        foreach (var s in adamw.state_dict().State)
        {
            var state = (TorchSharp.Modules.AdamW.State)s;
            foreach (var t in new[] { state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq })
                if (t is not null) bytes += t.numel() * t.element_size();
        }
        return bytes;
    }

    private static string Format(long[] dims) => "[" + string.Join(", ", dims) + "]";
}
