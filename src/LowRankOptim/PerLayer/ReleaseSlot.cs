using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// One parameter of the optimizer in the per-layer mode: how its forward uses are matched by fired taps, and
/// what its gradient has become so far in the current step (the accumulation window of k micro-batches).
/// </summary>
internal sealed class ReleaseSlot(LowRankParameterState state, string name)
{
    public LowRankParameterState State { get; } = state;
    public Parameter Parameter => State.Parameter;
    /// <summary>The parameter's name in the model (or its optimizer index when the model does not have it).</summary>
    public string Name { get; } = name;

    /// <summary>
    /// Owned by a module whose calls the mode cannot see or tap (not a <c>Module&lt;Tensor, Tensor&gt;</c>), or not
    /// in the model: its gradient stays in <c>.grad</c> until <c>step()</c>, as in the standard path.
    /// </summary>
    public bool AlwaysDeferred { get; set; }

    /// <summary>Forward uses by owning modules not yet matched by a fired tap, this window. Zero after a tap: the gradient is complete.</summary>
    public int Pending { get; set; }

    /// <summary>Set at the first gradient of the window: <see cref="Due"/> and <see cref="ProjectedAccumulation"/> are decided.</summary>
    public bool Decided { get; set; }
    /// <summary>A subspace refresh is due at this step (it needs the step's full gradient).</summary>
    public bool Due { get; set; }
    /// <summary>Micro-batches before the last accumulate as Σ Proj(G_i) in <see cref="ProjectedSum"/>; otherwise as Σ G_i in <see cref="Held"/>.</summary>
    public bool ProjectedAccumulation { get; set; }

    /// <summary>Σ G_i of the micro-batches so far, taken from <c>.grad</c>, or the step's full gradient kept for <c>step()</c> (clipping); owned here.</summary>
    public Tensor? Held { get; set; }
    /// <summary>Σ Proj(G_i) of the micro-batches before the last; owned here.</summary>
    public Tensor? ProjectedSum { get; set; }
    /// <summary>The step gathered (refreshed and projected) in the last micro-batch, waiting for <c>step()</c>; its R is owned here.</summary>
    public ParameterStep? Ready { get; set; }
    /// <summary>‖G‖ of the step's gradient (0-dim, the gradient's dtype), for clipping; owned here.</summary>
    public Tensor? Norm { get; set; }
    /// <summary>The step's gradient is complete and taken (held, gathered or finished).</summary>
    public bool Completed { get; set; }
    /// <summary>The update of this step has been applied (during backward).</summary>
    public bool Finished { get; set; }
    /// <summary>
    /// No gradient was there when its modules' taps had all fired: a use outside them is still to come (autograd
    /// accumulates a parameter once per pass, after every use). Its gradients wait in <c>.grad</c> for <c>step()</c>.
    /// </summary>
    public bool Outside { get; set; }
    /// <summary>
    /// This pass's gradient of the weight went straight into <see cref="ProjectedSum"/> (<see cref="ProjectedLinear"/>):
    /// no <c>.grad</c> at the tap is expected. Cleared at the tap that completes the pass's uses.
    /// </summary>
    public bool TakenDirectly { get; set; }

    /// <summary>Bytes of the gradient tensors this slot holds (<see cref="Held"/>, <see cref="ProjectedSum"/>, R of <see cref="Ready"/>).</summary>
    public long Bytes => BytesOf(Held) + BytesOf(ProjectedSum) + BytesOf(Ready?.Projected);

    internal static long BytesOf(Tensor? t) => t is null ? 0 : t.numel() * t.element_size();

    /// <summary>Ends the window: disposes what the slot holds and forgets the window's decisions.</summary>
    public void Reset()
    {
        Held?.Dispose();
        ProjectedSum?.Dispose();
        Ready?.Projected?.Dispose();
        Norm?.Dispose();
        (Held, ProjectedSum, Ready, Norm) = (null, null, null, null);
        (Decided, Due, ProjectedAccumulation, Completed, Finished, Outside, TakenDirectly, Pending) = (false, false, false, false, false, false, false, 0);
    }
}
