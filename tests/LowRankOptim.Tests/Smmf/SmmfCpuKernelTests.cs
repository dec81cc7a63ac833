using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Smmf;

/// <summary>The fused kernel's raw-memory contract: storage offsets, and the checks before any pointer is used.</summary>
public sealed class SmmfCpuKernelTests
{
    private static SmmfFactors Fresh(long rows, long cols) => new(rows, cols,
        zeros([rows]), zeros([cols]), zeros([(rows * cols + 7) / 8], ScalarType.Byte), zeros([rows]), zeros([cols]));

    [Fact]
    public void SlicesAreReadAndWrittenAtTheirStorageOffset()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(3);
        var big = randn([40, 7], generator: gen);
        var slice = big.narrow(0, 11, 15); // contiguous, storage offset 77
        slice.storage_offset().Should().Be(77);
        var copy = slice.clone();

        var (sliced, copied) = (Fresh(15, 7), Fresh(15, 7));
        var scalars = new SmmfScalars(0.9, 0.0, 1e-8);
        var bigOut = zeros([40, 7]);
        var outSlice = bigOut.narrow(0, 5, 15);
        var outCopy = zeros([15, 7]);
        SmmfCpuKernel.StepDirection(slice, sliced, scalars, outSlice);
        SmmfCpuKernel.StepDirection(copy, copied, scalars, outCopy);

        TensorAssert.Identical(outSlice, outCopy, "direction written at the slice's offset");
        bigOut.narrow(0, 0, 5).count_nonzero().item<long>().Should().Be(0, "nothing is written before the slice");
        bigOut.narrow(0, 20, 20).count_nonzero().item<long>().Should().Be(0, "nothing is written after the slice");
        TensorAssert.Identical(sliced.MomentSigns!, copied.MomentSigns!, "signs");
        TensorAssert.Identical(sliced.VarianceRows, copied.VarianceRows, "ρ_V");
    }

    public static TheoryData<string, Action, string, string> Rejections() => new()
    {
        { "float64 gradient", () => SmmfCpuKernel.StepDirection(zeros([4, 2], ScalarType.Float64), Fresh(4, 2), new(0.9, 0.5, 1e-8), zeros([4, 2])),
            "gradient", "gradient has dtype Float64; the CPU kernel needs Float32*" },
        { "wrong element count", () => SmmfCpuKernel.StepDirection(zeros([9]), Fresh(4, 2), new(0.9, 0.5, 1e-8), zeros([4, 2])),
            "gradient", "gradient has 9 elements; the CPU kernel expects 8*" },
        { "non-contiguous output", () => SmmfCpuKernel.StepDirection(zeros([4, 2]), Fresh(4, 2), new(0.9, 0.5, 1e-8), zeros([2, 4]).t()),
            "direction", "direction is not contiguous*" },
        { "wrong sign buffer", () => SmmfCpuKernel.StepParameter(zeros([4, 2]), Fresh(4, 2) with { MomentSigns = zeros([2], ScalarType.Byte) }, new(0.9, 0.5, 1e-8), zeros([4, 2])),
            "moment signs", "moment signs has 2 elements; the CPU kernel expects 1*" },
        { "bf16 parameter", () => SmmfCpuKernel.StepParameter(zeros([4, 2]), Fresh(4, 2), new(0.9, 0.5, 1e-8), zeros([4, 2], ScalarType.BFloat16)),
            "parameter", "parameter has dtype BFloat16; the CPU kernel needs Float32*" },
    };

    [Theory]
    [MemberData(nameof(Rejections))]
    public void BadTensorsAreRejectedBeforeAnyMemoryIsTouched(string what, Action act, string parameter, string message)
    {
        using var scope = NewDisposeScope();
        act.Should().Throw<ArgumentException>(what).Where(e => e.ParamName == parameter, what).WithMessage(message);
    }
}
