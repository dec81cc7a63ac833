using FluentAssertions;
using LowRankOptim.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// A stored block-wise moment is read back only when its entries are whole: codes of the declared length (uint8), one
/// finite, non-negative float32 absmax per block, both present or both absent. Anything else is refused naming the entry.
/// </summary>
public sealed class CorruptedStateTests
{
    /// <summary>An 8-bit first moment of 512 entries (2 blocks), as the storage policy declares it.</summary>
    private static readonly TensorEntry Entry = Blockwise();

    private static TensorEntry Blockwise()
    {
        var dense = new TensorEntry("exp_avg", [512], ScalarType.Float32) { Moment = MomentKind.Signed };
        return dense with { Storage = new MomentStorage(MomentFormat.Blockwise8Bit, MinElements: 256).StorageOf(dense) };
    }

    private static Exception? Load(Tensor? codes, Tensor? absmax)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            var w = new StateWriter(writer);
            w.Tensor("exp_avg", codes);
            w.Tensor("exp_avg.absmax", absmax);
        }
        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        try
        {
            using var state = CompressedState.Load(new StateReader(reader, "parameter 0"), Entry, CPU);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    [Fact]
    public void TheEntryIsBlockwise() => Entry.Storage.Should().BeOfType<BlockwiseStorage>();

    [Fact]
    public void WholeEntriesLoad()
    {
        using var scope = NewDisposeScope();
        Load(zeros(512, ScalarType.Byte), ones(2)).Should().BeNull();
        Load(null, null).Should().BeNull("an absent moment (a residual before its first selection)");
    }

    [Fact]
    public void BrokenEntriesAreRefusedNamingTheEntry()
    {
        using var scope = NewDisposeScope();
        Load(zeros(500, ScalarType.Byte), ones(2)).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("'exp_avg'");
        Load(zeros(512, ScalarType.Int32), ones(2)).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("'exp_avg'");
        Load(zeros(512, ScalarType.Byte), tensor(new[] { 1f, -1f })).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("'exp_avg.absmax'").And.Contain("negative");
        Load(zeros(512, ScalarType.Byte), tensor(new[] { 1f, float.NaN })).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("'exp_avg.absmax'").And.Contain("non-finite");
        Load(zeros(512, ScalarType.Byte), ones(3)).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("'exp_avg.absmax'");
        Load(zeros(512, ScalarType.Byte), null).Should().BeOfType<InvalidDataException>().Which.Message.Should().Contain("both hold a tensor or both be absent");
    }
}
