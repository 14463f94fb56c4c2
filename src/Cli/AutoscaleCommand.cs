using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Queue.Contracts;
using Queue.Contracts.Jobs;

namespace Queue.Cli;

/// <summary>
/// <c>queue autoscale</c>: plays KEDA's and the HPA's part on one machine. Every poll it reads the ingress's
/// <c>GET /scale</c> and applies their rules: activation from zero as soon as tasks wait; scale-out at once
/// to the desired count; scale-in to the highest desired count of the stabilisation window, stopping idle
/// workers with SIGTERM so they drain; the last worker goes only after the cool-down with nothing to do.
/// Workers are started with the given command and stopped (drained) when this command ends.
/// </summary>
public static class AutoscaleCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url") { Description = "The ingress.", DefaultValueFactory = _ => "http://127.0.0.1:5000" };
        var min = new Option<int>("--min") { Description = "Fewest workers.", DefaultValueFactory = _ => 0 };
        var max = new Option<int>("--max") { Description = "Most workers.", DefaultValueFactory = _ => 4 };
        var worker = new Option<string>("--worker") { Description = "Command that starts one worker (it gets --urls and Queue__Worker__WorkerId).", Required = true };
        var firstPort = new Option<int>("--first-port") { Description = "Port of the first worker's HTTP endpoint.", DefaultValueFactory = _ => 5201 };
        var logs = new Option<string>("--logs") { Description = "Folder for the workers' logs.", DefaultValueFactory = _ => "." };
        var poll = new Option<double>("--poll") { Description = "Seconds between looks at /scale (KEDA's pollingInterval).", DefaultValueFactory = _ => 1 };
        var window = new Option<double>("--stabilization") { Description = "Seconds of desired counts a scale-in considers (the HPA's stabilization window).", DefaultValueFactory = _ => 30 };
        var cooldown = new Option<double>("--cooldown") { Description = "Seconds with nothing to do before the last worker stops (KEDA's cooldownPeriod).", DefaultValueFactory = _ => 30 };
        var command = new Command("autoscale", "Start and stop workers from the ingress's scaling signal, as KEDA and the HPA would.") { url, min, max, worker, firstPort, logs, poll, window, cooldown };
        command.SetAction(async (parse, ct) =>
        {
            var scaler = new Autoscaler(parse.GetValue(url)!, parse.GetValue(worker)!, parse.GetValue(firstPort), Path.GetFullPath(parse.GetValue(logs)!),
                Math.Max(0, parse.GetValue(min)), Math.Max(1, parse.GetValue(max)),
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(poll), 0.1, 600)), TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(window), 0, 3600)),
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(cooldown), 0, 3600)));
            return await scaler.RunAsync(ct);
        });
        return command;
    }

    private sealed class Autoscaler(string url, string workerCommand, int firstPort, string logs, int min, int max, TimeSpan poll, TimeSpan window, TimeSpan cooldown)
    {
        private readonly List<(DateTime At, int Desired)> history = [];
        private readonly List<Worker> workers = [];
        private readonly List<Worker> draining = [];
        private DateTime lastActive = DateTime.MinValue;
        private int started;

        public async Task<int> RunAsync(CancellationToken ct)
        {
            Directory.CreateDirectory(logs);
            using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(10) };
            // A protected ingress wants a reader's key for /scale and /workers, as KEDA's TriggerAuthentication gives it.
            if (Environment.GetEnvironmentVariable("QUEUE_API_KEY") is { Length: > 0 } key)
            {
                http.DefaultRequestHeaders.Add("X-Api-Key", key);
            }
            Say($"autoscaling {min}..{max} workers from {url}/scale every {poll.TotalSeconds:0.#} s (window {window.TotalSeconds:0.#} s, cool-down {cooldown.TotalSeconds:0.#} s)");
            try
            {
                await Scale(http, min, "the minimum", ct);
                while (!ct.IsCancellationRequested)
                {
                    await Task.Delay(poll, ct);
                    ScaleSignal? signal;
                    try
                    {
                        signal = await http.GetFromJsonAsync("/scale", QueueJsonContext.Default.ScaleSignal, ct);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
                    {
                        Say($"the ingress did not answer ({e.Message}); keeping {workers.Count} workers");
                        continue;
                    }
                    await StepAsync(http, signal!, ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            Say($"stopping {workers.Count} workers");
            foreach (var w in workers)
            {
                w.Terminate();
            }
            draining.AddRange(workers);
            workers.Clear();
            foreach (var w in draining)
            {
                await w.WaitAsync(TimeSpan.FromSeconds(60));
            }
            return 0;
        }

        private async Task StepAsync(HttpClient http, ScaleSignal signal, CancellationToken ct)
        {
            ReapDrained();
            var now = DateTime.UtcNow;
            var desired = Math.Clamp(signal.DesiredWorkers, min, max);
            history.Add((now, desired));
            history.RemoveAll(h => h.At < now - window);
            if (signal.QueuedTasks + signal.LeasedTasks > 0)
            {
                lastActive = now;
            }
            var current = workers.Count;
            if (desired > current)
            {
                // Scale-out (and activation from zero) at once, as the HPA's default scale-up policy does.
                await Scale(http, desired, $"{signal.QueuedTasks} queued, {signal.LeasedTasks} leased, desired {desired}", ct);
                return;
            }
            // Scale-in: the highest recommendation of the window, as the HPA's stabilization does.
            var target = 0;
            foreach (var (_, d) in history)
            {
                target = Math.Max(target, d);
            }
            // KEDA keeps one replica until the cool-down has passed with nothing to do.
            if (target == 0 && min == 0 && current > 0 && now - lastActive < cooldown)
            {
                target = 1;
            }
            if (target < current)
            {
                await Scale(http, target, $"desired {desired}, highest in the window {target}", ct);
            }
        }

        private async Task Scale(HttpClient http, int target, string why, CancellationToken ct)
        {
            while (workers.Count < target)
            {
                var id = $"auto-{++started}";
                var port = firstPort + started - 1;
                workers.Add(Worker.Start(workerCommand, id, port, Path.Combine(logs, $"worker-{id}.log")));
                Say($"start {id} on port {port}: {why} → {workers.Count} workers");
            }
            if (workers.Count <= target)
            {
                return;
            }
            // Stop idle workers first: a busy one would drain, but an idle one hands nothing back.
            var busy = await BusyAsync(http, ct);
            while (workers.Count > target)
            {
                var victim = workers.FindLast(w => !busy.Contains(w.Id)) ?? workers[^1];
                workers.Remove(victim);
                victim.Terminate();
                draining.Add(victim);
                Say($"stop {victim.Id} ({(busy.Contains(victim.Id) ? "busy: it drains" : "idle")}): {why} → {workers.Count} workers");
            }
        }

        private static async Task<HashSet<string>> BusyAsync(HttpClient http, CancellationToken ct)
        {
            var busy = new HashSet<string>(StringComparer.Ordinal);
            try
            {
                foreach (var w in await http.GetFromJsonAsync("/workers", QueueJsonContext.Default.ListWorkerHeartbeat, ct) ?? [])
                {
                    if (w.Busy > 0)
                    {
                        busy.Add(w.Worker);
                    }
                }
            }
            catch (HttpRequestException)
            {
            }
            return busy;
        }

        private void ReapDrained()
        {
            foreach (var w in draining.ToArray())
            {
                if (w.HasExited)
                {
                    Say($"{w.Id} exited with {w.ExitCode}");
                    draining.Remove(w);
                    _ = w.WaitAsync(TimeSpan.FromSeconds(5));
                }
            }
        }

        private static void Say(string text) =>
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{DateTime.UtcNow:HH:mm:ss.fff} {text}"));
    }

    private sealed class Worker(string id, Process process, StreamWriter log, Lock gate)
    {
        private bool closed;

        public string Id => id;

        public bool HasExited => process.HasExited;

        public int ExitCode => process.ExitCode;

        public static Worker Start(string command, string id, int port, string logPath)
        {
            // The command runs under bash so it may be "dotnet path/to/Queue.Worker.dll"; exec keeps the PID ours.
            var info = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add($"exec {command} --urls http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}");
            info.Environment["Queue__Worker__WorkerId"] = id;
            var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start '{command}'.");
            var worker = new Worker(id, process, new StreamWriter(logPath, append: true) { AutoFlush = true }, new Lock());
            process.OutputDataReceived += (_, e) => worker.Write(e.Data);
            process.ErrorDataReceived += (_, e) => worker.Write(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return worker;
        }

        /// <summary>SIGTERM: the worker stops receiving, finishes or hands back its tasks, then exits.</summary>
        public void Terminate()
        {
            if (!process.HasExited)
            {
                using var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]);
                kill?.WaitForExit();
            }
        }

        /// <summary>Waits for the exit (killing the worker past the timeout), then closes its log.</summary>
        public async Task WaitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
            lock (gate)
            {
                closed = true;
                log.Dispose();
            }
        }

        private void Write(string? line)
        {
            lock (gate)
            {
                if (line is not null && !closed)
                {
                    log.WriteLine(line);
                }
            }
        }
    }
}
