// A new user's app: builds a model first, then switches from torch.optim.AdamW to LowRank.GaLore (the README's
// "change one line"), trains a few steps with a scheduler, saves and resumes. .ci/run builds and runs it
// outside the repository through each documented route (tests/Consumer/run-routes.sh): no Directory.Build
// file of this repository applies to it.
using LowRankOptim;
using TorchSharp;
using static TorchSharp.torch;

var route = args.Length > 0 ? args[0] : "?";
manual_seed(0);
var model = nn.Sequential(("fc1", nn.Linear(32, 64)), ("act", nn.ReLU()), ("fc2", nn.Linear(64, 8)));
var x = randn(64, 32);
var y = randint(0, 8, 64);
// var opt = optim.AdamW(model.parameters(), lr: 1e-3);
var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 1e-2, rank: 8, update_proj_gap: 20, scale: 0.25);
var sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max: 40);
float first = 0, last = 0;
for (var step = 0; step < 40; step++)
{
    using var scope = NewDisposeScope();
    var loss = nn.functional.cross_entropy(model.call(x), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
    sched.step();
    last = loss.item<float>();
    if (step == 0) first = last;
}
var checkpoint = Path.Combine(Path.GetTempPath(), $"consumer-{Environment.ProcessId}.bin");
opt.save_state_dict(checkpoint);
var resumed = LowRank.GaLore(LowRank.SplitParameters(model), lr: 1e-2, rank: 8, update_proj_gap: 20, scale: 0.25);
resumed.load_state_dict(checkpoint);
File.Delete(checkpoint);

Console.WriteLine($"native fix: {TorchSharpNative.Report?.Outcome} ({TorchSharpNative.Report?.Detail})");
foreach (var warning in opt.Warnings) Console.WriteLine(warning);
Console.WriteLine(opt.Summary(model.named_parameters()));
if (!(last < first)) { Console.WriteLine($"consumer FAILED ({route}): loss {first} -> {last} did not fall"); return 1; }
if (resumed.States.Sum(s => s.Step) != opt.States.Sum(s => s.Step)) { Console.WriteLine($"consumer FAILED ({route}): the resumed state differs"); return 1; }
Console.WriteLine($"consumer OK ({route}): loss {first:F4} -> {last:F4}");
return 0;
