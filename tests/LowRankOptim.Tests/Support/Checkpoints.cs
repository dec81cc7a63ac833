namespace LowRankOptim.Tests.Support;

/// <summary>An optimizer's state file, in memory.</summary>
public static class Checkpoints
{
    /// <summary>What <c>save_state_dict</c> writes: two optimizers with equal bytes have equal state and options.</summary>
    public static byte[] Bytes(LowRankOptimizer opt)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) opt.save_state_dict(writer);
        return stream.ToArray();
    }
}
