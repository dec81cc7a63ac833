using System.Diagnostics.CodeAnalysis;
using TorchSharp.Modules;

namespace LowRankOptim;

/// <summary>
/// Factories shaped like <c>torch.optim.AdamW(...)</c>, with the same parameter names, so switching an
/// existing training loop is a rename. Each returns a <see cref="LowRankOptimizer"/> whose defaults are the
/// method's preset: <c>LowRank.X(groups, knobs)</c> is <c>new LowRankOptimizer(groups, LowRankPresets.X(knobs))</c>.
/// </summary>
/// <remarks>
/// Every factory has TorchSharp's three shapes: a flat <see cref="IEnumerable{T}"/> of <see cref="Parameter"/>
/// (one group), the named parameters of <c>module.named_parameters()</c> (the names are not used, as in
/// <c>torch.optim.AdamW</c>), and <see cref="LowRankParamGroup"/>s whose unset options take the knobs' values.
/// The knobs come in one order with one name each (see the comment at the top of the class); pass them by name.
/// </remarks>
[SuppressMessage("Naming", "CA1707", Justification = "Parameter names follow torch.optim and the reference implementations.")]
public static partial class LowRank
{
    // Knob names and order, shared by every factory (LowRank.X) and every preset (LowRankPresets.X):
    //  0. what to optimize (factories only): parameters, named parameters, groups, or a model and its helpers;
    //  1. lr;
    //  2. the update rule's knobs in the order of its reference signature, with weight_decay where that signature
    //     puts it (always after the betas and eps):
    //       Adam (torch.optim.AdamW)      beta1, beta2, eps, weight_decay
    //       Adafactor (Hugging Face)      eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay,
    //                                     scale_parameter, relative_step, warmup_init
    //       SMMF (eai-lab/SMMF)           beta, eps, weight_decay, decay_rate, growth_rate, vector_reshape, weight_decay_mode
    //  3. the projection's common knobs, those the method has: rank, update_proj_gap, scale, proj_type;
    //  4. the method's own knobs: DCT sim_type, ell_norm, max_shape; Online Subspace Descent p_optimizer,
    //     p_weight_decay; GaLore+ oversampling, power_iterations, seed, cross_head, residual_density,
    //     residual_warmup, residual_reestimate, residual_scale;
    //  5. the Adam conventions: correct_bias, conventions;
    //  6. an alternative algorithm and its knobs: GaLore's projector, oversampling, power_iterations, seed;
    //  6b. how the moments are stored: optim_bits (bitsandbytes' name), on every method with moments (not SMMF);
    //  6c. how bfloat16 weights are rounded: bf16_stochastic_round (torchao's name), where optim_bits is;
    //  6d. the block size of 8- and 4-bit moments: block_size (torchao's name), where optim_bits is (after 6c, added
    //      later: appended there so that no positional caller of bf16_stochastic_round changed meaning);
    //  7. execution choices that leave the math unchanged: kernel.
    // Names are torch.optim's and the references' snake_case; a knob two methods share has one name and one
    // meaning in both, and it is the ParamName of the ArgumentException an invalid value throws. A knob added
    // later goes to its place in this order; an overload whose positions that changes stays, [Obsolete] and
    // hidden, for positional callers (see DctAdamW, OnlineSubspaceDescent, GaLorePlus over a model).
    // A new method adds one file in Presets/: its preset (LowRankPresets) and its three factory shapes (LowRank).

    /// <summary>
    /// Splits a module's parameters into the two usual groups (galore_torch's README): the weights of
    /// <see cref="Linear"/> layers, which take the optimizer's projection, and everything else
    /// (embeddings, norms, biases, other tensors), trained in the full space.
    /// </summary>
    /// <param name="module">The model.</param>
    /// <param name="include">
    /// Optional filter on the Linear module's name (e.g. galore_torch's training script projects only modules
    /// whose name contains "attn" or "mlp", leaving the LM head in the full space); all Linear layers when null.
    /// </param>
    /// <returns>The projected group, then the full-space group.</returns>
    public static LowRankParamGroup[] SplitParameters(TorchSharp.torch.nn.Module module, Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        var projected = new List<Parameter>();
        var projectedHandles = new HashSet<IntPtr>();
        foreach (var (name, m) in module.named_modules())
            if (m is Linear linear && (include?.Invoke(name) ?? true) && linear.weight is { } w && projectedHandles.Add(w.Handle))
                projected.Add(w);
        var rest = module.parameters().Where(p => !projectedHandles.Contains(p.Handle)).ToList();
        return
        [
            new LowRankParamGroup(projected),
            new LowRankParamGroup(rest, new LowRankOptions { Projection = FullSpace.Instance }),
        ];
    }

    /// <summary>
    /// Splits a model's parameters for GaLore+: one group per distinct head layout among the projected
    /// <see cref="Linear"/> weights (its options' projection is <paramref name="projection"/> with that layout;
    /// weights without one get <paramref name="projection"/> without heads), then one full-space group with the
    /// rest (embeddings, norms, biases, Linear layers <paramref name="include"/> rejects). Empty groups are left out
    /// except the last.
    /// </summary>
    /// <param name="module">The model.</param>
    /// <param name="heads_of">The head layout of a Linear module by its name, or null when it is not an attention projection.</param>
    /// <param name="projection">The GaLore+ settings shared by every projected group.</param>
    /// <param name="include">Which Linear modules are projected (all when null).</param>
    /// <returns>One group per head layout, then the full-space group.</returns>
    public static LowRankParamGroup[] HeadGroups(TorchSharp.torch.nn.Module module, Func<string, AttentionHeads?> heads_of,
        GaLorePlusProjection projection, Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(heads_of);
        ArgumentNullException.ThrowIfNull(projection);
        var byLayout = new List<(AttentionHeads? Heads, List<Parameter> Parameters)>();
        var projectedHandles = new HashSet<IntPtr>();
        foreach (var (name, m) in module.named_modules())
        {
            if (m is not Linear linear || !(include?.Invoke(name) ?? true) || linear.weight is not { } w || !projectedHandles.Add(w.Handle)) continue;
            var heads = heads_of(name);
            var slot = byLayout.FindIndex(g => Equals(g.Heads, heads));
            if (slot < 0) byLayout.Add((heads, [w]));
            else byLayout[slot].Parameters.Add(w);
        }
        var rest = module.parameters().Where(p => !projectedHandles.Contains(p.Handle)).ToList();
        return
        [
            .. byLayout.Select(g => new LowRankParamGroup(g.Parameters, new LowRankOptions { Projection = projection with { Heads = g.Heads } })),
            new LowRankParamGroup(rest, new LowRankOptions { Projection = FullSpace.Instance }),
        ];
    }

    /// <summary>One group of <paramref name="parameters"/> (the flat shape).</summary>
    private static LowRankParamGroup[] OneGroup(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return [new LowRankParamGroup(parameters)];
    }

    /// <summary>One group of the named <paramref name="parameters"/>, names dropped (the named shape).</summary>
    private static LowRankParamGroup[] OneGroup(IEnumerable<(string name, Parameter parameter)> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return [new LowRankParamGroup(parameters.Select(np => np.parameter))];
    }
}
