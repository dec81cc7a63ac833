using FluentAssertions;

namespace LowRankOptim.Tests.Support;

/// <summary>An optimizer's state file, in memory, and the check that a load of another file is refused without a change.</summary>
public static class Checkpoints
{
    /// <summary>What <c>save_state_dict</c> writes: two optimizers with equal bytes have equal state and options.</summary>
    public static byte[] Bytes(LowRankOptimizer opt)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) opt.save_state_dict(writer);
        return stream.ToArray();
    }

    /// <summary>
    /// Loads the file at <paramref name="path"/> into <paramref name="target"/>, expects a refusal whose message matches
    /// <paramref name="pattern"/> (FluentAssertions' wildcards), and that the refused load changed nothing (<see cref="Bytes"/>).
    /// </summary>
    public static void ShouldRefuse(LowRankOptimizer target, string path, string pattern)
    {
        var before = Bytes(target);
        var load = () => target.load_state_dict(path);
        load.Should().Throw<Exception>().WithMessage(pattern);
        Bytes(target).Should().Equal(before, "a refused load changes nothing");
    }
}
