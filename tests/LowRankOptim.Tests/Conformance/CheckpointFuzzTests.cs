using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// A checkpoint fuzz test (issue 12): with a fixed seed, <see cref="MutationsPerMethod"/> random mutations (bit flips,
/// random bytes, truncations, insertions, deletions, swapped bytes, overwritten 8-byte values) of a saved file of
/// every catalog method. Every mutated file is either refused with a message that names the place (the entry of a
/// parameter or group, or the header), leaving the loading optimizer byte-identical, or loads a state equal to the
/// original. The counts of each outcome are printed (docs/benchmarks.md, "Reliability").
/// </summary>
public sealed class CheckpointFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 20250612;
    private const int MutationsPerMethod = 30;

    private static readonly string[] HeaderPlaces =
        ["optimizer type", "parameter groups", "parameter states", "checkpoint's header", "type name", "bytes follow the last parameter's state"];

    [Fact]
    public void EveryMutatedCheckpointIsRefusedNamingItsPlaceOrLoadsTheOriginalState()
    {
        using var scope = NewDisposeScope();
        var random = new Random(Seed);
        var counts = new Dictionary<string, int>
        {
            ["tried"] = 0, ["refused naming an entry"] = 0, ["refused in the header"] = 0, ["loaded, equal to the original"] = 0,
        };
        var kinds = new Dictionary<string, int>();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-fuzz-");
        try
        {
            foreach (var method in MethodCatalog.All)
            {
                using var source = method.Trained(TestProblems.Mlp(1), 9, seed: 7); // past every warm-up: residual indices exist
                var original = Checkpoints.Bytes(source);
                using var target = method.Trained(TestProblems.Mlp(2), 2, seed: 7);
                var path = Path.Combine(dir.FullName, method.Name + ".ckpt");
                for (var i = 0; i < MutationsPerMethod; i++)
                {
                    var (kind, mutated) = Mutate(original, random);
                    kinds[kind] = kinds.GetValueOrDefault(kind) + 1;
                    File.WriteAllBytes(path, mutated);
                    var before = Checkpoints.Bytes(target);
                    var what = $"{method.Name}, mutation {i} ({kind})";
                    counts["tried"]++;
                    try
                    {
                        target.load_state_dict(path);
                    }
                    catch (InvalidDataException e)
                    {
                        Checkpoints.Bytes(target).Should().Equal(before, $"{what}: a refused load leaves the optimizer byte-identical ({e.Message})");
                        if (e.Message.Contains("entry '", StringComparison.Ordinal))
                        {
                            e.Message.Should().MatchRegex(@"^(parameter \d+ \(shape|parameter group \d+)", $"{what}: the entry's parameter or group is named");
                            counts["refused naming an entry"]++;
                        }
                        else
                        {
                            HeaderPlaces.Should().Contain(p => e.Message.Contains(p, StringComparison.Ordinal), $"{what}: the message names its place: {e.Message}");
                            counts["refused in the header"]++;
                        }
                        continue;
                    }
                    Checkpoints.Bytes(target).Should().Equal(original, $"{what}: a mutated file that loads holds the original state");
                    counts["loaded, equal to the original"]++;
                    using (var reader = new BinaryReader(new MemoryStream(before))) target.load_state_dict(reader); // back to the target's own state
                }
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
        output.WriteLine($"seed {Seed}, {MethodCatalog.All.Count} methods × {MutationsPerMethod} mutations");
        output.WriteLine(string.Join(", ", kinds.OrderBy(k => k.Key).Select(k => $"{k.Key}: {k.Value}")));
        output.WriteLine(string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value}")));
        counts["tried"].Should().Be(MethodCatalog.All.Count * MutationsPerMethod);
        (counts["refused naming an entry"] + counts["refused in the header"] + counts["loaded, equal to the original"]).Should().Be(counts["tried"]);
        counts["refused naming an entry"].Should().BeGreaterThan(counts["tried"] / 2, "most bytes of a file belong to entries");
    }


    private static (string Kind, byte[] Bytes) Mutate(byte[] file, Random random)
    {
        var bytes = (byte[])file.Clone();
        var at = random.Next(bytes.Length);
        switch (random.Next(7))
        {
            case 0:
                bytes[at] ^= (byte)(1 << random.Next(8));
                return ("bit flip", bytes);
            case 1:
                bytes[at] = (byte)random.Next(256);
                return ("random byte", bytes);
            case 2:
                return ("truncation", bytes[..at]);
            case 3:
                return ("inserted byte", [.. bytes[..at], (byte)random.Next(256), .. bytes[at..]]);
            case 4:
                return ("deleted byte", [.. bytes[..at], .. bytes[(at + 1)..]]);
            case 5:
                var other = random.Next(bytes.Length);
                (bytes[at], bytes[other]) = (bytes[other], bytes[at]);
                return ("swapped bytes", bytes);
            default:
                double[] values = [double.NaN, -1.0, 1e300, double.PositiveInfinity, 0.0];
                var value = BitConverter.GetBytes(values[random.Next(values.Length)]);
                at = Math.Min(at, bytes.Length - value.Length);
                value.CopyTo(bytes, at);
                return ("overwritten 8 bytes", bytes);
        }
    }
}
