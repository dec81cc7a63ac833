using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// APOLLO (Zhu et al., MLSys 2025; docs/algorithms/apollo.md): Adam runs on a seeded random rank-r projection of
    /// every 2-D parameter's gradient only to measure how much it would scale each channel; the update is the
    /// full-rank gradient scaled channel-wise (or tensor-wise) by that ratio, times √<paramref name="scale"/>, with
    /// Fira's norm-growth limiter. The random matrix is regenerated from a seed every <paramref name="update_proj_gap"/>
    /// steps: the state per m×n weight is 2·r·max(m, n) moments, a seed and the limiter's norm. Other tensors get
    /// Hugging-Face AdamW. Defaults: the reference's class (lr 1e-3, ε = 1e-6, decay after the update) and its scripts
    /// (rank 128, T = 200, scale 1).
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v (Hugging Face's AdamW).</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="rank">r (not clamped: the random projection works for any r).</param>
    /// <param name="update_proj_gap">T: a new random matrix at steps 1, T+1, 2T+1, …</param>
    /// <param name="scale">The reference's scale: the update is multiplied by √scale (1 for APOLLO, 128 for APOLLO-Mini).</param>
    /// <param name="proj_type">The projected side; channel scaling needs <see cref="ProjectionType.Std"/>.</param>
    /// <param name="scale_type">Channel-wise (APOLLO) or tensor-wise (APOLLO-Mini) scaling.</param>
    /// <param name="proj">Seeded random matrix (the reference's default) or SVD.</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter instead of after.</param>
    /// <param name="disable_nl">Turn Fira's norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options (Hugging Face's conventions) with an <see cref="ApolloProjection"/>.</returns>
    public static LowRankOptions Apollo(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int rank = 128,
        int update_proj_gap = 200, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std, ApolloScaling scale_type = ApolloScaling.Channel,
        ApolloProjector proj = ApolloProjector.Random, bool scale_front = false, bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, correct_bias, AdamConventions.GaLoreReference,
            new ApolloProjection(rank, update_proj_gap, scale, scale_type, proj_type, proj, !disable_nl, scale_front), optim_bits, bf16_stochastic_round, block_size);

    /// <summary>
    /// APOLLO-Mini: APOLLO with rank 1 and one scaling factor per matrix, scale 128 (a factor √128 ≈ 11.3) as the
    /// reference's scripts; the state per m×n weight is 2·max(m, n) moments, a seed and the limiter's norm.
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="update_proj_gap">T: a new random vector at steps 1, T+1, 2T+1, …</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter instead of after.</param>
    /// <param name="disable_nl">Turn Fira's norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options (Hugging Face's conventions) with a rank-1, tensor-wise <see cref="ApolloProjection"/>.</returns>
    public static LowRankOptions ApolloMini(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0, int update_proj_gap = 200,
        double scale = 128.0, bool scale_front = false, bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        Apollo(lr, beta1, beta2, eps, weight_decay, rank: 1, update_proj_gap, scale, ProjectionType.Std, ApolloScaling.Tensor,
            ApolloProjector.Random, scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>APOLLO over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.Apollo(...))</c>; see <see cref="LowRankPresets.Apollo"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.Apollo(LowRank.SplitParameters(model), lr: 0.01, rank: 128, update_proj_gap: 200);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="proj_type">The projected side.</param>
    /// <param name="scale_type">Channel-wise or tensor-wise scaling.</param>
    /// <param name="proj">Seeded random matrix or SVD.</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Apollo(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        ApolloScaling scale_type = ApolloScaling.Channel, ApolloProjector proj = ApolloProjector.Random, bool scale_front = false,
        bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.Apollo(lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, scale_type, proj,
            scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>APOLLO over a flat parameter list (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="proj_type">The projected side.</param>
    /// <param name="scale_type">Channel-wise or tensor-wise scaling.</param>
    /// <param name="proj">Seeded random matrix or SVD.</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Apollo(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int rank = 128, int update_proj_gap = 200, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        ApolloScaling scale_type = ApolloScaling.Channel, ApolloProjector proj = ApolloProjector.Random, bool scale_front = false,
        bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        Apollo(OneGroup(parameters), lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, scale_type, proj,
            scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size);

    /// <summary>APOLLO over named parameters (one group; the names are not used): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="rank">r.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="proj_type">The projected side.</param>
    /// <param name="scale_type">Channel-wise or tensor-wise scaling.</param>
    /// <param name="proj">Seeded random matrix or SVD.</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer Apollo(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int rank = 128, int update_proj_gap = 200, double scale = 1.0, ProjectionType proj_type = ProjectionType.Std,
        ApolloScaling scale_type = ApolloScaling.Channel, ApolloProjector proj = ApolloProjector.Random, bool scale_front = false,
        bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        Apollo(OneGroup(parameters), lr, beta1, beta2, eps, weight_decay, rank, update_proj_gap, scale, proj_type, scale_type, proj,
            scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size);

    /// <summary>APOLLO-Mini over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.ApolloMini(...))</c>; see <see cref="LowRankPresets.ApolloMini"/>.</summary>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer ApolloMini(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int update_proj_gap = 200, double scale = 128.0, bool scale_front = false, bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.ApolloMini(lr, beta1, beta2, eps, weight_decay, update_proj_gap, scale, scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>APOLLO-Mini over a flat parameter list (one group): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer ApolloMini(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0.0,
        int update_proj_gap = 200, double scale = 128.0, bool scale_front = false, bool disable_nl = false, bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        ApolloMini(OneGroup(parameters), lr, beta1, beta2, eps, weight_decay, update_proj_gap, scale, scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size);

    /// <summary>APOLLO-Mini over named parameters (one group; the names are not used): every 2-D parameter is projected.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε, added to the uncorrected √v.</param>
    /// <param name="weight_decay">λ, decoupled, applied after the update.</param>
    /// <param name="update_proj_gap">T.</param>
    /// <param name="scale">The reference's scale (√scale multiplies the update).</param>
    /// <param name="scale_front">Multiply by √scale before the norm-growth limiter.</param>
    /// <param name="disable_nl">Turn the norm-growth limiter off.</param>
    /// <param name="correct_bias">Adam's bias corrections.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer ApolloMini(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double weight_decay = 0.0, int update_proj_gap = 200, double scale = 128.0, bool scale_front = false, bool disable_nl = false,
        bool correct_bias = true, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        ApolloMini(OneGroup(parameters), lr, beta1, beta2, eps, weight_decay, update_proj_gap, scale, scale_front, disable_nl, correct_bias, optim_bits, bf16_stochastic_round, block_size);
}
