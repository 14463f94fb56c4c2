using System.CommandLine;
using Queue.Cli;

var root = new RootCommand("Queue: a message-queue driven MapReduce engine.");
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(AutoscaleCommand.Create());
JobCommands.AddTo(root);
SortCommands.AddTo(root);
return await root.Parse(args).InvokeAsync();
