namespace LowRankOptim;

/// <summary>When a subspace recomputes its basis, as the references schedule it (1-based steps k, refresh period T).</summary>
internal readonly record struct RefreshSchedule
{
    private readonly long _gap;
    private readonly bool _atMultiples;
    private readonly bool _once;

    private RefreshSchedule(long gap, bool atMultiples, bool once) => (_gap, _atMultiples, _once) = (gap, atMultiples, once);

    /// <summary>galore_torch's schedule (and APOLLO's): k = 1, T+1, 2T+1, …</summary>
    public static RefreshSchedule EveryGapFromFirstStep(long gap) => new(gap, atMultiples: false, once: false);

    /// <summary>DCT-AdamW's reference schedule: k = 1 and every k with k mod T = 0.</summary>
    public static RefreshSchedule FirstStepAndMultiplesOfGap(long gap) => new(gap, atMultiples: true, once: false);

    /// <summary>Online Subspace Descent: only the first step (the basis then moves by its own optimizer).</summary>
    public static RefreshSchedule FirstStepOnly { get; } = new(1, atMultiples: false, once: true);

    /// <summary>True when the basis must be recomputed before the update of step <paramref name="step"/> (always while there is none).</summary>
    public bool IsDue(long step, bool hasBasis) =>
        !hasBasis || (!_once && (_atMultiples ? step == 1 || step % _gap == 0 : (step - 1) % _gap == 0));
}
