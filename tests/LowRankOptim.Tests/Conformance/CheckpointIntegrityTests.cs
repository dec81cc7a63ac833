using System.Text;
using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method: a checkpoint that holds an impossible value (a non-finite moment, a negative second moment or
/// count, an index out of range) or a corrupted byte is refused with a message that names the parameter (or group) and
/// the entry, and the loading optimizer is left byte-identical; lengths and dimensions read from a file are bounded
/// before anything is allocated for them; saves are atomic (issue 12, point 4).
/// </summary>
public sealed class CheckpointIntegrityTests
{
    static CheckpointIntegrityTests() => ConfigRegistry.Register(ExplodingSaveRule.Kind, ExplodingSaveRule.Read);

    public static TheoryData<string> Methods() => MethodCatalog.Names();


    private static void Load(LowRankOptimizer opt, byte[] file)
    {
        using var reader = new BinaryReader(new MemoryStream(file));
        opt.load_state_dict(reader);
    }

    /// <summary>Loads <paramref name="file"/>, expects a refusal whose message contains every one of <paramref name="parts"/>, and no change.</summary>
    private static void Refused(LowRankOptimizer target, byte[] file, string because, params string[] parts)
    {
        var before = Checkpoints.Bytes(target);
        var load = () => Load(target, file);
        var message = load.Should().Throw<InvalidDataException>(because).Which.Message;
        foreach (var part in parts) message.Should().Contain(part, because);
        Checkpoints.Bytes(target).Should().Equal(before, $"{because}: a refused load changes nothing");
    }

    private static IEnumerable<StateSlots> Components(LowRankParameterState state) =>
        state.Subspace is { } subspace ? [state.Rule.State, subspace.State] : [state.Rule.State];

    private static bool Floating(Tensor t) => t.is_floating_point();

    [Theory]
    [MemberData(nameof(Methods))]
    public void AnImpossibleSavedValueIsRefusedNamingItsParameterAndEntry(string method)
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get(method).Trained(TestProblems.Mlp(1), 9); // past GaLore+'s residual warm-up: indices exist
        using var target = MethodCatalog.Get(method).Trained(TestProblems.Mlp(2), 1);
        var cases = 0;
        foreach (var state in source.States)
        {
            var where = $"parameter {state.Index} (";
            foreach (var slot in Components(state).SelectMany(c => c.TensorSlots))
            {
                if (slot.Value is not { } t || t.numel() == 0) continue;
                var name = slot.Entry.Name;
                (Scalar Value, string Says)[] bad = Floating(t)
                    ? slot.Entry.Values == TensorValues.NonNegative
                        ? [(double.NaN, "non-finite"), (-1.0, "negative"), (double.PositiveInfinity, "non-finite")]
                        : [(double.NaN, "non-finite"), (double.NegativeInfinity, "non-finite")]
                    : name.EndsWith("indices", StringComparison.Ordinal)
                        ? [(-1L, "outside"), (t.dtype == ScalarType.Int32 ? int.MaxValue : long.MaxValue, "outside")]
                        : [];
                foreach (var (value, says) in bad)
                {
                    using var original = t.clone();
                    t.view(-1).index_fill_(0, tensor(new long[] { 0 }), value);
                    var file = Checkpoints.Bytes(source);
                    t.copy_(original);
                    Refused(target, file, $"{method}: {value} in entry '{name}' of parameter {state.Index}", where, $"entry '{name}'", says);
                    cases++;
                }
            }
            foreach (var counter in Components(state).SelectMany(c => c.CounterSlots))
            {
                var value = counter.Value;
                counter.Value = -1;
                var file = Checkpoints.Bytes(source);
                counter.Value = value;
                Refused(target, file, $"{method}: a negative count in entry '{counter.Entry.Name}' of parameter {state.Index}",
                    where, $"entry '{counter.Entry.Name}'", ">= 0");
                cases++;
            }
            var step = state.Step;
            state.Step = -1;
            var negativeStep = Checkpoints.Bytes(source);
            state.Step = step;
            Refused(target, negativeStep, $"{method}: step −1 of parameter {state.Index}", where, "entry 'step'", ">= 0");
        }
        cases.Should().BeGreaterThan(source.States.Count, $"{method}: every state tensor and counter was corrupted once");

        var options = source.ParamGroups.Cast<LowRankParamGroup>().First().Options;
        var (lr, initial) = (options.LearningRate, options.InitialLearningRate);
        options.InitialLearningRate = double.NaN;
        var nanInitial = Checkpoints.Bytes(source);
        options.InitialLearningRate = initial;
        Refused(target, nanInitial, $"{method}: a NaN initial learning rate", "parameter group 0", "entry 'initial_lr'");
        options.LearningRate = -1;
        var negativeLr = Checkpoints.Bytes(source);
        options.LearningRate = lr;
        Refused(target, negativeLr, $"{method}: a negative learning rate", "parameter group 0", "lr must be finite and >= 0");
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void ACorruptedByteInATensorFailsItsEntrysChecksum(string method)
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get(method).Trained(TestProblems.Mlp(3), 4);
        using var target = MethodCatalog.Get(method).Trained(TestProblems.Mlp(4), 1);
        var file = Checkpoints.Bytes(source);
        // The last parameter's rule's first present tensor: corrupt the low byte of its last element.
        var state = source.States[^1];
        var slot = state.Rule.State.TensorSlots.First(s => s.Value is { } v && v.numel() > 0);
        var name = slot.Entry.Name;
        var at = LastIndexOf(file, Entry(name, 6)) + name.Length + 3; // length-prefixed name, kind, presence flag
        at += Header(slot.Value!).Length + (int)(slot.Value!.numel() * slot.Value.element_size()) - 1;
        var corrupted = (byte[])file.Clone();
        corrupted[at] ^= 0x01;
        Refused(target, corrupted, $"{method}: a flipped bit in '{name}'", $"parameter {state.Index} (", $"entry '{name}' fails its checksum");
    }

    /// <summary>A 2^26 dimension count where a state tensor's header is: refused before the shape array is allocated.</summary>
    [Fact]
    public void AHugeDimensionCountIsRefusedWithoutAllocatingForIt()
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get("adamw").Trained(TestProblems.Mlp(5), 2);
        using var target = MethodCatalog.Get("adamw").Trained(TestProblems.Mlp(6), 1);
        var file = Checkpoints.Bytes(source);
        var at = IndexOf(file, Entry("exp_avg_sq", 6)) + "exp_avg_sq".Length + 3 + 1; // name, kind, presence flag, dtype: the dimension count
        file[at].Should().Be(2, "fc1.weight's moment is 2-D");
        byte[] huge = [0x80, 0x80, 0x80, 0x20]; // LEB128 of 2^26
        var patched = file[..at].Concat(huge).Concat(file[(at + 1)..]).ToArray();
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        Refused(target, patched, "a 2^26-dimensional tensor", "parameter 0 (", "entry 'exp_avg_sq'", "67108864 dimensions");
        (GC.GetAllocatedBytesForCurrentThread() - allocated).Should().BeLessThan(16L << 20, "nothing is allocated for the dimensions");
    }

    [Fact]
    public void HugeStringLengthsAndCountsAreRefusedBeforeUse()
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get("galore-std").Trained(TestProblems.Mlp(5), 2);
        using var target = MethodCatalog.Get("galore-std").Trained(TestProblems.Mlp(6), 1);
        var file = Checkpoints.Bytes(source);
        var at = IndexOf(file, Entry("shape", 5)) + "shape".Length + 2; // the string value's length prefix
        var patched = file[..at].Concat(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x07 }).Concat(file[(at + 1)..]).ToArray();
        Refused(target, patched, "a 2 GB string", "parameter 0 (", "entry 'shape'");
        var header = (byte[])file.Clone();
        header[0] = 0x7F; // the type name's length
        Refused(target, header, "a type name of 127 bytes", "optimizer type");
    }

    [Fact]
    public void BytesAfterTheLastStateAreRefusedInAFile()
    {
        using var scope = NewDisposeScope();
        using var source = MethodCatalog.Get("smmf").Trained(TestProblems.Mlp(5), 2);
        using var target = MethodCatalog.Get("smmf").Trained(TestProblems.Mlp(6), 1);
        var path = Path.GetTempFileName();
        try
        {
            source.save_state_dict(path);
            File.AppendAllText(path, "x");
            var before = Checkpoints.Bytes(target);
            var load = () => target.load_state_dict(path);
            load.Should().Throw<InvalidDataException>().WithMessage("*1 bytes follow the last parameter's state*");
            Checkpoints.Bytes(target).Should().Equal(before);
        }
        finally { File.Delete(path); }
    }

    /// <summary>A save that fails midway leaves an existing file as it was and no temporary file behind.</summary>
    [Fact]
    public void SavesAreAtomic()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(randn(6, 4));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], new LowRankOptions
        {
            LearningRate = 0.1, WeightDecay = 0, DecayOrder = WeightDecayOrder.AfterUpdate, Projection = FullSpace.Instance, Rule = new ExplodingSaveRule(false),
        });
        w.grad = randn(6, 4);
        opt.step();
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-atomic-");
        try
        {
            var path = Path.Combine(dir.FullName, "optimizer.bin");
            opt.save_state_dict(path);
            var good = File.ReadAllBytes(path);
            ((LowRankParamGroup)opt.ParamGroups.First()).Options.Rule = new ExplodingSaveRule(true);
            var save = () => opt.save_state_dict(path);
            save.Should().Throw<IOException>().WithMessage("*disk full*");
            File.ReadAllBytes(path).Should().Equal(good, "the earlier checkpoint is intact");
            Directory.GetFiles(dir.FullName).Should().Equal([path], "no temporary file is left behind");
            var fresh = Path.Combine(dir.FullName, "new.bin");
            save = () => opt.save_state_dict(fresh);
            save.Should().Throw<IOException>();
            File.Exists(fresh).Should().BeFalse("a failed save never creates the file");
        }
        finally { dir.Delete(recursive: true); }
    }

    private static byte[] Header(Tensor t)
    {
        // TorchSharp's header: LEB128 dtype, LEB128 ndim, LEB128 sizes.
        var bytes = new List<byte>();
        void Leb(long v)
        {
            do
            {
                var b = (byte)(v & 0x7f);
                v >>= 7;
                bytes.Add(v == 0 ? b : (byte)(b | 0x80));
            } while (v != 0);
        }
        Leb((long)t.dtype);
        Leb(t.dim());
        foreach (var d in t.shape) Leb(d);
        return [.. bytes];
    }

    /// <summary>An entry's header as StateWriter writes it: the length-prefixed name and the kind byte.</summary>
    private static byte[] Entry(string name, byte kind) => [(byte)name.Length, .. Encoding.UTF8.GetBytes(name), kind];

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        throw new InvalidOperationException("not found");
    }

    private static int LastIndexOf(byte[] haystack, byte[] needle)
    {
        for (var i = haystack.Length - needle.Length; i >= 0; i--)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        throw new InvalidOperationException("not found");
    }
}

/// <summary>SGD whose config, when <see cref="Explode"/>, fails while it is being saved (a full disk, say).</summary>
public sealed record ExplodingSaveRule(bool Explode) : IUpdateRuleConfig
{
    public const string Kind = "tests.ExplodingSaveRule";

    private static SgdConfig Sgd => new(0.5);

    public ScalarType WorkingType(ScalarType gradientType) => gradientType;

    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new Rule(Sgd.Create(shape, dtype, device));

    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => Sgd.DeclareState(shape, dtype);

    public void Validate(string where) { }

    public void Save(StateWriter writer)
    {
        writer.Double("momentum", 0.5);
        if (Explode) throw new IOException("disk full");
    }

    public static ExplodingSaveRule Read(StateReader reader)
    {
        reader.Double("momentum");
        return new ExplodingSaveRule(false);
    }

    private sealed class Rule(IUpdateRule sgd) : IUpdateRule
    {
        public StateSlots State => sgd.State;

        public RuleUpdate Compute(Tensor gradient, in RuleContext context) => sgd.Compute(gradient, context with { Config = Sgd });
    }
}
