using System.Runtime.CompilerServices;
using TorchSharp.Modules;

namespace LowRankOptim;

public static partial class LowRankPresets
{
    /// <summary>
    /// Plain AdamW in the full space with torch.optim's conventions and TorchSharp's defaults (note:
    /// TorchSharp's <c>weight_decay</c> default is 0, PyTorch's 0.01): equal to TorchSharp's
    /// <c>torch.optim.AdamW</c>, and the baseline the low-rank optimizers are compared with.
    /// </summary>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="conventions">torch.optim's (default) or galore_torch's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>New, validated options: Adam options in the full space (<see cref="FullSpace.Instance"/>).</returns>
    public static LowRankOptions AdamW(
        double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0,
        AdamConventions conventions = AdamConventions.TorchOptim, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        AdamOptions(lr, beta1, beta2, eps, weight_decay, true, conventions, FullSpace.Instance, optim_bits, bf16_stochastic_round, block_size);
}

public static partial class LowRank
{
    /// <summary>AdamW over parameter groups: <c>new LowRankOptimizer(groups, LowRankPresets.AdamW(...))</c>; see <see cref="LowRankPresets.AdamW"/>.</summary>
    /// <example><code>
    /// var opt = LowRank.AdamW(model.parameters(), lr: 1e-3, weight_decay: 0.01);
    /// </code></example>
    /// <param name="groups">The parameter groups; their unset options take the values of the knobs.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="conventions">torch.optim's (default) or galore_torch's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer AdamW(
        IEnumerable<LowRankParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.0, AdamConventions conventions = AdamConventions.TorchOptim, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(groups, LowRankPresets.AdamW(
            lr, beta1, beta2, eps, weight_decay, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>AdamW over a flat parameter list (one group): no projection.</summary>
    /// <param name="parameters">The parameters, e.g. <c>model.parameters()</c>; one group.</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="conventions">torch.optim's (default) or galore_torch's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    [OverloadResolutionPriority(1)]
    public static LowRankOptimizer AdamW(
        IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0,
        AdamConventions conventions = AdamConventions.TorchOptim, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.AdamW(
            lr, beta1, beta2, eps, weight_decay, conventions, optim_bits, bf16_stochastic_round, block_size));

    /// <summary>AdamW over named parameters (one group): no projection.</summary>
    /// <param name="parameters">The named parameters, e.g. <c>model.named_parameters()</c>; one group (the names are not used).</param>
    /// <param name="lr">η.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="eps">ε.</param>
    /// <param name="weight_decay">λ, decoupled.</param>
    /// <param name="conventions">torch.optim's (default) or galore_torch's ε placement and decay order.</param>
    /// <param name="optim_bits">How the moments are stored (bitsandbytes' <c>optim_bits</c>): 32 dense (default), 16 bfloat16, 8 block-wise 8-bit, 4 block-wise 4-bit; see <see cref="MomentStorage.FromOptimBits"/>. For stochastic rounding set <see cref="LowRankOptions.MomentStorage"/> instead.</param>
    /// <param name="bf16_stochastic_round">Round the step's result into bfloat16 parameters stochastically (torchao's <c>bf16_stochastic_round</c>; seed 0) instead of to nearest, so that updates below half a bf16 ulp of the weights are not lost; float32 parameters are unaffected (see <see cref="WeightRounding"/>, which also takes a seed).</param>
    /// <param name="block_size">Entries per quantization block of 8- and 4-bit moments (torchao's <c>block_size</c>, as in its <c>Adam8bit(..., block_size=256)</c>): 0 (default) is the format's own, 256 for 8-bit and 128 for 4-bit (torchao's and today's bitsandbytes'); bitsandbytes' block-wise optimizers used 2048 up to its 0.4x versions (GaLore's paper measured 8-bit GaLore with those). Else a positive multiple of 32 up to 4096, larger blocks costing fewer absmax bytes and quantizing coarser; only with <paramref name="optim_bits"/> 8 or 4. See <see cref="MomentStorage.BlockSize"/>.</param>
    /// <returns>The optimizer.</returns>
    public static LowRankOptimizer AdamW(
        IEnumerable<(string name, Parameter parameter)> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.0, AdamConventions conventions = AdamConventions.TorchOptim, int optim_bits = 32, bool bf16_stochastic_round = false, int block_size = 0) =>
        new(OneGroup(parameters), LowRankPresets.AdamW(
            lr, beta1, beta2, eps, weight_decay, conventions, optim_bits, bf16_stochastic_round, block_size));
}
