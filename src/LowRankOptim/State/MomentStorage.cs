using LowRankOptim.Kernels;
using TorchSharp;

namespace LowRankOptim;

/// <summary>How a parameter group's optimizer moments are stored (<see cref="MomentStorage"/>).</summary>
public enum MomentFormat
{
    /// <summary>Dense in the rule's working dtype (float32 for float32 parameters): no compression.</summary>
    Dense,
    /// <summary>bfloat16 (2 bytes an entry); the rule computes in its working dtype.</summary>
    BFloat16,
    /// <summary>Block-wise 8-bit (torchao's <c>OptimState8bit</c>: blocks of 256 by default, <see cref="MomentStorage.BlockSize"/>; dynamic maps): 1 byte + 4/256 bytes an entry.</summary>
    Blockwise8Bit,
    /// <summary>Block-wise 4-bit (torchao's <c>OptimState4bit</c>: blocks of 128 by default, <see cref="MomentStorage.BlockSize"/>): 0.5 byte + 4/128 bytes an entry.</summary>
    Blockwise4Bit,
}

/// <summary>What a state entry is, for <see cref="MomentStorage"/>: only declared moments are compressed.</summary>
public enum MomentKind
{
    /// <summary>Not a moment (a basis, indices, factors, counters' tensors): always stored as declared.</summary>
    None,
    /// <summary>A signed moment (Adam's m, a momentum buffer): the signed map.</summary>
    Signed,
    /// <summary>A non-negative moment (Adam's v): the unsigned map.</summary>
    NonNegative,
}

/// <summary>
/// How a parameter group's moments are stored: every state entry a rule or subspace declares as a moment
/// (<see cref="TensorEntry.Moment"/>) takes this format, whatever the method (Adam projected or full-space, Adafactor's
/// momentum, GaLore+'s residual moments, Online Subspace Descent's basis moments, APOLLO, SGD's momentum). Part of the
/// math configuration (saved, and a checkpoint loads only into a group with the same storage). The argument
/// <c>optimBits</c> of the factories follows bitsandbytes' <c>optim_bits</c> (32, 16, 8; and 4 as torchao's 4-bit state).
/// </summary>
/// <param name="Format">The format.</param>
/// <param name="Rounding">How values are rounded to the format (deterministic nearest by default).</param>
/// <param name="Seed">The seed of stochastic rounding; must be 0 with nearest rounding (it would be ignored).</param>
/// <param name="MinElements">
/// Block-wise formats store a moment only when it has at least this many entries and a whole number of blocks; smaller
/// or ragged ones stay dense, as in torchao (bitsandbytes' <c>min_8bit_size</c>, 4096 by default).
/// </param>
/// <param name="BlockSize">
/// Entries per quantization block of the block-wise formats (torchao's <c>block_size</c>); 0, the default, is the
/// format's own: 256 for 8-bit, 128 for 4-bit (torchao's defaults and today's bitsandbytes'). bitsandbytes'
/// block-wise optimizers used 2048 up to its 0.4x versions. Otherwise a positive multiple of
/// <see cref="BlockMultiple"/> up to <see cref="MaxBlockSize"/>; must be 0 for dense and bfloat16 moments (it would be
/// ignored). Part of the math configuration: two storages whose <see cref="EffectiveBlockSize"/> is the same are equal.
/// </param>
public sealed record MomentStorage(MomentFormat Format = MomentFormat.Dense, StateRounding Rounding = StateRounding.Nearest, long Seed = 0,
    long MinElements = MomentStorage.DefaultMinElements, int BlockSize = 0)
{
    /// <summary>bitsandbytes' and torchao's threshold: smaller moments' bytes do not matter.</summary>
    public const long DefaultMinElements = 4096;

    /// <summary>A block size must be a multiple of this: the CPU kernel's unit (its vector loops take 32 codes at a time; a test ties the two).</summary>
    public const int BlockMultiple = 32;

    /// <summary>The largest block size: the CPU kernel's limit (its stack buffers hold one block of each moment; a test ties the two).</summary>
    public const int MaxBlockSize = 4096;

    /// <summary>The block size of a block-wise format when <see cref="BlockSize"/> is 0: 256 for 8-bit, 128 for 4-bit; 0 for the others.</summary>
    /// <param name="format">The format.</param>
    public static int DefaultBlockSize(MomentFormat format) => format switch
    {
        MomentFormat.Blockwise8Bit => BlockFormat.Signed8.BlockSize,
        MomentFormat.Blockwise4Bit => BlockFormat.Signed4.BlockSize,
        _ => 0,
    };

    /// <summary>The block size in force: <see cref="BlockSize"/>, or the format's default when it is 0 (0 for dense and bfloat16).</summary>
    public int EffectiveBlockSize => BlockSize == 0 ? DefaultBlockSize(Format) : BlockSize;

    /// <summary>Dense moments (the default).</summary>
    public static MomentStorage Dense { get; } = new();

    /// <summary>The storage for bitsandbytes' <c>optim_bits</c>: 32 dense, 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit.</summary>
    /// <param name="optimBits">32, 16, 8 or 4.</param>
    /// <param name="rounding">The rounding.</param>
    /// <param name="seed">The seed of stochastic rounding.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="optimBits"/> is another value.</exception>
    /// <param name="minElements">The smallest moment stored block-wise (bitsandbytes' <c>min_8bit_size</c>).</param>
    /// <param name="blockSize">Entries per block of 8- and 4-bit moments (torchao's <c>block_size</c>); 0: the format's default (see <see cref="BlockSize"/>).</param>
    public static MomentStorage FromOptimBits(int optimBits, StateRounding rounding = StateRounding.Nearest, long seed = 0, long minElements = DefaultMinElements,
        int blockSize = 0) => optimBits switch
    {
        32 => new(MomentFormat.Dense, rounding, seed, minElements, blockSize),
        16 => new(MomentFormat.BFloat16, rounding, seed, minElements, blockSize),
        8 => new(MomentFormat.Blockwise8Bit, rounding, seed, minElements, blockSize),
        4 => new(MomentFormat.Blockwise4Bit, rounding, seed, minElements, blockSize),
        _ => throw new ArgumentOutOfRangeException(nameof(optimBits), optimBits, "optim_bits must be 32 (dense), 16 (bfloat16), 8 (block-wise 8-bit) or 4 (block-wise 4-bit)."),
    };

    /// <summary>The bits of this format, as <see cref="FromOptimBits"/> takes them.</summary>
    public int OptimBits => Format switch { MomentFormat.BFloat16 => 16, MomentFormat.Blockwise8Bit => 8, MomentFormat.Blockwise4Bit => 4, _ => 32 };

    /// <summary>Throws <see cref="ArgumentException"/> naming the option, the value and the constraint.</summary>
    /// <param name="where">Where the storage is used ("parameter group 0").</param>
    public void Validate(string where)
    {
        if (!Enum.IsDefined(Format))
            throw new ArgumentOutOfRangeException("moment_storage", Format, $"{where}: moment format must be one of {string.Join(", ", Enum.GetNames<MomentFormat>())}.");
        if (!Enum.IsDefined(Rounding))
            throw new ArgumentOutOfRangeException("rounding", Rounding, $"{where}: rounding must be one of {string.Join(", ", Enum.GetNames<StateRounding>())}.");
        if (Format == MomentFormat.Dense && Rounding != StateRounding.Nearest)
            throw new ArgumentException($"{where}: rounding = {Rounding} needs a compressed moment format (BFloat16, Blockwise8Bit, Blockwise4Bit); dense moments are not rounded.", "rounding");
        if (MinElements < 1)
            throw new ArgumentOutOfRangeException("min_8bit_size", MinElements, $"{where}: the smallest moment stored block-wise must be >= 1 entries.");
        if (Rounding == StateRounding.Nearest && Seed != 0)
            throw new ArgumentException($"{where}: seed = {Seed} is used by stochastic rounding only; with rounding = Nearest it must be 0.", "seed");
        if (BlockSize != 0 && Format is not (MomentFormat.Blockwise8Bit or MomentFormat.Blockwise4Bit))
            throw new ArgumentException($"{where}: block_size = {BlockSize} needs a block-wise moment format (Blockwise8Bit, Blockwise4Bit: optim_bits 8 or 4); " +
                $"{Format} moments have no blocks, so it would be ignored. Leave block_size at 0.", "block_size");
        if (BlockSize < 0 || BlockSize % BlockMultiple != 0 || BlockSize > MaxBlockSize)
            throw new ArgumentOutOfRangeException("block_size", BlockSize,
                $"{where}: block_size = {BlockSize} must be 0 (the format's default: 256 for 8-bit, 128 for 4-bit) or a positive multiple of {BlockMultiple} up to {MaxBlockSize}.");
    }

    /// <summary>
    /// How an entry is stored under this format: a declared moment of a floating working dtype in the format, when it fits
    /// (block-wise: at least <see cref="MinElements"/> entries, a whole number of blocks); everything else as declared.
    /// </summary>
    /// <param name="entry">The declared entry.</param>
    public StateStorage StorageOf(TensorEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Moment == MomentKind.None || entry.Storage is not DenseStorage { DType: var working } ||
            working is not (torch.ScalarType.Float32 or torch.ScalarType.Float64 or torch.ScalarType.BFloat16))
            return entry.Storage;
        var count = DTypes.Elements(entry.Shape);
        var signed = entry.Moment == MomentKind.Signed;
        switch (Format)
        {
            case MomentFormat.BFloat16 when working != torch.ScalarType.BFloat16:
                return new BFloat16Storage(working, Rounding, Seed);
            case MomentFormat.Blockwise8Bit or MomentFormat.Blockwise4Bit:
                var format = Format == MomentFormat.Blockwise8Bit
                    ? signed ? BlockFormat.Signed8 : BlockFormat.Unsigned8
                    : signed ? BlockFormat.Signed4 : BlockFormat.Unsigned4;
                if (BlockSize != 0 && BlockSize != format.BlockSize) format = format with { BlockSize = BlockSize };
                return count >= MinElements && format.Fits(count) ? new BlockwiseStorage(format, working, Rounding, Seed) : entry.Storage;
            default:
                return entry.Storage;
        }
    }

    /// <summary><paramref name="declaration"/> with every moment in this format (nested components included).</summary>
    /// <param name="declaration">A component's declaration (dense, as its config made it).</param>
    public StateDeclaration Apply(StateDeclaration declaration)
    {
        ArgumentNullException.ThrowIfNull(declaration);
        if (Format == MomentFormat.Dense) return declaration;
        return new StateDeclaration(declaration.Entries.Select(e => e switch
        {
            TensorEntry t => t with { Storage = StorageOf(t) },
            ComponentEntry c => c with { Declaration = Apply(c.Declaration) },
            _ => e,
        }));
    }

    /// <summary>Equal storages: the same format, rounding, seed, smallest block-wise moment and <see cref="EffectiveBlockSize"/> (0 and the format's default are one block size).</summary>
    /// <param name="other">The other storage.</param>
    public bool Equals(MomentStorage? other) =>
        other is not null && Format == other.Format && Rounding == other.Rounding && Seed == other.Seed && MinElements == other.MinElements &&
        EffectiveBlockSize == other.EffectiveBlockSize;

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Format, Rounding, Seed, MinElements, EffectiveBlockSize);

    /// <inheritdoc />
    public override string ToString() => Format switch
    {
        MomentFormat.Dense => "dense",
        _ => $"{Format}" + (EffectiveBlockSize == DefaultBlockSize(Format) ? "" : $" (blocks of {EffectiveBlockSize})") +
             (Rounding == StateRounding.Nearest ? "" : $" ({Rounding} rounding, seed {Seed})") + (MinElements == DefaultMinElements ? "" : $" (min {MinElements} entries)"),
    };
}
