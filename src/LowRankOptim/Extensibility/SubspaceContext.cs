namespace LowRankOptim;

/// <summary>What a subspace is told at each step of its parameter.</summary>
/// <param name="ParameterIndex">The parameter's index in the optimizer (over all groups, in order); seeds random sketches.</param>
/// <param name="Step">k, the 1-based step being taken.</param>
/// <param name="LearningRate">η_k, the group's current learning rate (after the scheduler).</param>
/// <param name="InitialLearningRate">η_0, the group's initial learning rate (what schedulers use as the base).</param>
public readonly record struct SubspaceContext(int ParameterIndex, long Step, double LearningRate, double InitialLearningRate);
