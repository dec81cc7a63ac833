using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The data-parallel seam: a group of <see cref="Size"/> processes (ranks) that sum and broadcast tensors. The
/// library takes no dependency on any transport; <c>LowRankOptim.Mpi</c> implements this over MPI. Every
/// member is collective: every rank calls it, in the same order, with tensors of the same shapes and dtypes.
/// </summary>
public interface ICommunicator
{
    /// <summary>This process's rank, 0 ≤ rank &lt; <see cref="Size"/>.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int Size { get; }

    /// <summary>
    /// Replaces every tensor, in place, by the sum over ranks of that tensor. An implementation may pack small
    /// tensors into buckets so they do not pay one latency each; results are identical on every rank.
    /// </summary>
    /// <param name="tensors">The tensors, in the same order on every rank.</param>
    void AllReduceSum(IReadOnlyList<Tensor> tensors);

    /// <summary>Overwrites every tensor, in place, with <paramref name="root"/>'s values.</summary>
    /// <param name="tensors">The tensors, in the same order on every rank.</param>
    /// <param name="root">The rank whose values are sent.</param>
    void Broadcast(IReadOnlyList<Tensor> tensors, int root);
}
