namespace LowRankOptim.Kernels;

/// <summary>
/// Nearest rounding's code as a few straight lines, for the AVX-512 8-bit path: inside one decade of a dynamic map the
/// thresholds (<see cref="CodeSearch.Thresholds"/>) are evenly spaced, so there the code is a line in y, rounded. For
/// |y| ≤ 1 (y = x / max |x|), by its magnitude a = |y| and its sign:
/// <list type="number">
/// <item>the piece p: the first piece of a's binade (<see cref="FirstPiece"/>, by a's exponent and the sign), or the next
/// one where a reaches that one's start (<see cref="NextStart"/>; no binade holds two piece starts);</item>
/// <item>g = min(a, <see cref="Clamp"/>[p])·<see cref="Slope"/>[p] + <see cref="Offset"/>[p] (one fused multiply-add), and
/// the code is g rounded to the nearest integer;</item>
/// <item>but only where |g − round(g)| &lt; <see cref="Half"/>. Where g lies within 0.5 − Half of a half integer, or is
/// NaN, the lane is <em>unsure</em> and the caller takes the exact search.</item>
/// </list>
/// Why a sure lane is exact. On each side take the target t(a): the code for a positive sign, minus the code for a
/// negative one, so that it rises with a on both sides; the negative side's lines are stored negated (g and its rounding
/// change sign together). t is a step function, and the line's g(a) = a·s + o (s ≥ 0, correctly rounded) never decreases.
/// Each piece is checked at its start and at each step S inside it, where t rises from t(S⁻) (the float below S) to
/// t(S): g(S⁻) ≤ t(S⁻) + 1 − Half and g(S) ≥ t(S) − 1 + Half. By monotonicity every a below S has g ≤ t(S⁻) + 1 − Half,
/// so a sure lane rounds to at most t(S⁻), and every a from S on has g ≥ t(S) − 1 + Half, so a sure lane rounds to at
/// least t(S); between steps the two bounds meet. Past the piece's last step a is clamped at the largest magnitude whose
/// g is at most that step's target, so the line stops there. <see cref="Half"/> is the largest value all these checks
/// allow (at most 0.5), so that as few lanes as possible are unsure (on random data about one in 10^5).
/// </summary>
internal sealed unsafe class CodeLines
{
    /// <summary>Pieces per sign: the positive side's are 0 … 7, the negative side's 8 … 15 (one-register permutes).</summary>
    public const int PiecesPerSign = 8;

    /// <summary>The bucket of a magnitude's bits: max(exponent − 96, 0), 0 … 31 for a ≤ 1 (bucket 0 holds a &lt; 2^−30).</summary>
    public const int ExponentBias = 96;

    /// <summary>The first piece of each bucket: [b] for a positive sign, [32 + b] for a negative one (64 bytes; [0] is 0).</summary>
    public readonly byte* FirstPiece;

    /// <summary>[p]: the smallest magnitude of piece p + 1 (+∞ after a side's last piece); 16 floats.</summary>
    public readonly float* NextStart;

    /// <summary>[p]: the largest magnitude the piece's line is taken at (+∞ where the line is flat); 16 floats.</summary>
    public readonly float* Clamp;

    /// <summary>[p]: the piece's line, g = a·Slope + Offset (negated for the negative side); 16 floats each.</summary>
    public readonly float* Slope, Offset;

    /// <summary>A lane is sure where |g − round(g)| &lt; Half.</summary>
    public readonly float Half;

    private CodeLines(List<Piece>[] sides, float half)
    {
        Half = half;
        FirstPiece = CodeSearch.AlignedZeroed<byte>(64);
        NextStart = CodeSearch.AlignedZeroed<float>(16);
        Clamp = CodeSearch.AlignedZeroed<float>(16);
        Slope = CodeSearch.AlignedZeroed<float>(16);
        Offset = CodeSearch.AlignedZeroed<float>(16);
        for (var side = 0; side < 2; side++)
        {
            var pieces = sides[side];
            var sign = side == 0 ? 1f : -1f;
            for (var k = 0; k < PiecesPerSign; k++)
            {
                var p = PiecesPerSign * side + k;
                var piece = pieces[Math.Min(k, pieces.Count - 1)];
                NextStart[p] = k + 1 < pieces.Count ? pieces[k + 1].Start : float.PositiveInfinity;
                (Clamp[p], Slope[p], Offset[p]) = (piece.Clamp, sign * piece.Slope, sign * piece.Offset);
            }
            for (var bucket = 0; bucket < 32; bucket++)
                FirstPiece[32 * side + bucket] = (byte)(PiecesPerSign * side + pieces.FindLastIndex(q => q.Start <= BucketStart(bucket)));
        }
    }

    /// <summary>The lines of the nearest-rounding <paramref name="thresholds"/> (ascending, [0] = −∞), or null where no
    /// such lines exist within <see cref="PiecesPerSign"/> pieces a side, one piece start a binade.</summary>
    public static CodeLines? TryBuild(float[] thresholds)
    {
        var sides = new List<Piece>[2];
        var half = 0.5;
        for (var side = 0; side < 2; side++)
        {
            var target = new Side(thresholds, negative: side == 1);
            var pieces = target.Pieces();
            if (pieces is null || pieces.Count > PiecesPerSign) return null;
            for (var bucket = 0; bucket < 32; bucket++)
            {
                var (low, high) = (BucketStart(bucket), BucketStart(bucket + 1));
                if (pieces.Count(p => p.Start > low && p.Start < high) > 1) return null;
            }
            half = Math.Min(half, pieces.Min(p => target.Slack(p)));
            sides[side] = pieces;
        }
        var h = (float)half;
        if (h > half) h = MathF.BitDecrement(h);
        return h < Side.WorkingHalf ? null : new CodeLines(sides, h);
    }

    /// <summary>
    /// The code of <paramref name="y"/> (|y| ≤ 1 or NaN) as the AVX-512 loop finds it, one lane at a time: false where the
    /// lane is unsure (the tests hold it to the search on every threshold and on random floats).
    /// </summary>
    public bool TryFind(float y, out int code)
    {
        var a = MathF.Abs(y);
        var bucket = Math.Max((int)(BitConverter.SingleToUInt32Bits(a) >> 23) - ExponentBias, 0);
        int p = FirstPiece[Math.Min(bucket, 31) + (BitConverter.SingleToInt32Bits(y) < 0 ? 32 : 0)];
        if (a >= NextStart[p]) p++;
        var g = MathF.FusedMultiplyAdd(Clamp[p] < a ? Clamp[p] : a, Slope[p], Offset[p]);
        var rounded = MathF.Round(g, MidpointRounding.ToEven);
        code = (int)rounded;
        return MathF.Abs(g - rounded) < Half;
    }

    /// <summary>The smallest magnitude of bucket b: 0 for b = 0, else 2^(b − 31); bucket 32 starts at 2.</summary>
    private static float BucketStart(int bucket) => bucket == 0 ? 0f : MathF.ScaleB(1f, bucket - 31);

    /// <summary>A piece: magnitudes from <see cref="Start"/> to the next piece's start, and its line and clamp.</summary>
    private sealed record Piece(float Start, float Slope, float Offset, float Clamp, int FirstStep, int EndStep);

    /// <summary>
    /// One side's target as a function of the magnitude a: the code for a positive sign, minus the code for a negative
    /// one (so that it rises with a on both sides), and the magnitudes where it steps.
    /// </summary>
    private sealed class Side
    {
        /// <summary>The bound on Half the pieces are fitted with (their lines then leave at least this much).</summary>
        public const float WorkingHalf = 0.5f - 1f / 4096;

        private readonly float[] thresholds;
        private readonly bool negative;
        private readonly float[] steps;

        public Side(float[] thresholds, bool negative)
        {
            this.thresholds = thresholds;
            this.negative = negative;
            // Positive side: the target rises at each positive threshold. Negative side: the code falls below threshold
            // T < 0 once −a < T, that is from the float above |T| on.
            steps = [.. thresholds.Skip(1)
                .Where(t => negative ? t < 0 : t > 0)
                .Select(t => negative ? MathF.BitIncrement(-t) : t)
                .Where(s => s <= 1f)
                .Distinct()
                .Order()];
        }

        /// <summary>The target at magnitude a.</summary>
        public int Target(float a) => negative ? -Code(-a) : Code(a);

        /// <summary>The nearest-rounded code of y (not NaN): how many thresholds q ≥ 1 are ≤ y ([0] = −∞ always is).</summary>
        private int Code(float y) => CodeSearch.CountAtMost(thresholds, y) - 1;

        /// <summary>Greedy pieces: each starts at 0 or at a step and takes as many further steps as one line fits.</summary>
        public List<Piece>? Pieces()
        {
            var pieces = new List<Piece>();
            var (start, next) = (0f, 0);
            while (true)
            {
                var piece = Fit(start, next, next);
                for (var end = next + 1; end <= steps.Length; end++)
                {
                    var longer = Fit(start, next, end);
                    if (Slack(longer) < WorkingHalf) break;
                    piece = longer;
                }
                if (Slack(piece) < WorkingHalf) return null;
                if (piece.EndStep == steps.Length && piece.EndStep > piece.FirstStep)
                {
                    // Past the last step the target is constant: a flat piece there keeps every magnitude up to 1 sure,
                    // where the line could reach a half code (it does at y = −1 for the signed map, the scale's own
                    // entry in every block whose largest entry is negative).
                    var shorter = Fit(start, next, steps.Length - 1);
                    if (Slack(shorter) >= WorkingHalf)
                    {
                        pieces.Add(shorter);
                        pieces.Add(Fit(steps[^1], steps.Length, steps.Length));
                        return pieces;
                    }
                }
                pieces.Add(piece);
                if (piece.EndStep == steps.Length) return pieces;
                (start, next) = (steps[piece.EndStep], piece.EndStep + 1);
            }
        }

        /// <summary>
        /// The line of a piece from <paramref name="start"/> with steps [first, end) inside: through g = t − 0.5 at the first
        /// and last steps (a line half a code under the start's target, rising to the step, for one step; flat for none).
        /// </summary>
        private Piece Fit(float start, int first, int end)
        {
            var low = Target(start);
            double slope, offset;
            if (end - first >= 2)
            {
                var (a, b) = (steps[first], steps[end - 1]);
                slope = (Target(b) - Target(a)) / ((double)b - a);
                offset = Target(a) - 0.5 - slope * a;
            }
            else if (end - first == 1)
            {
                var a = steps[first];
                slope = (Target(a) - 0.5 - low) / ((double)a - start);
                offset = low - slope * start;
            }
            else (slope, offset) = (0, low);
            var (s, o) = ((float)slope, (float)offset);
            return new Piece(start, s, o, s > 0 ? LastAtMost(s, o, Target(steps[end - 1])) : float.PositiveInfinity, first, end);
        }

        /// <summary>The largest magnitude up to 2 whose g = a·s + o is at most <paramref name="highest"/> (bisection on the floats).</summary>
        private static float LastAtMost(float s, float o, int highest)
        {
            uint low = 0, high = BitConverter.SingleToUInt32Bits(2f);
            while (high - low > 1)
            {
                var middle = low + (high - low) / 2;
                if (MathF.FusedMultiplyAdd(BitConverter.UInt32BitsToSingle(middle), s, o) <= highest) low = middle;
                else high = middle;
            }
            return BitConverter.UInt32BitsToSingle(low);
        }

        /// <summary>
        /// The largest Half the piece allows (see the class remarks): at its start, g ≥ t − 1 + Half; at each step S inside,
        /// g(S⁻) ≤ t(S⁻) + 1 − Half and g(S) ≥ t(S) − 1 + Half. Negative where a line falls (it must not).
        /// </summary>
        public double Slack(Piece piece)
        {
            if (piece.Slope < 0 || piece.EndStep > piece.FirstStep && piece.Clamp < steps[piece.EndStep - 1]) return -1;
            double G(float a) => MathF.FusedMultiplyAdd(a, piece.Slope, piece.Offset);
            var slack = G(piece.Start) - Target(piece.Start) + 1;
            for (var k = piece.FirstStep; k < piece.EndStep; k++)
            {
                var (s, below) = (steps[k], MathF.BitDecrement(steps[k]));
                slack = Math.Min(slack, Math.Min(Target(below) + 1 - G(below), G(s) - Target(s) + 1));
            }
            return double.IsNaN(slack) ? -1 : slack;
        }
    }
}
