using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Queue.Tests.Infrastructure;

/// <summary>
/// One of our services run as a real OS process on 127.0.0.1, with its output captured for failure
/// messages. Disposing ends exactly the process it started.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly BoundedLog output = new();

    private ServiceProcess(Process process, int port)
    {
        this.process = process;
        Port = port;
        BaseAddress = new Uri($"http://127.0.0.1:{port}");
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    public int Pid => process.Id;

    public bool HasExited => process.HasExited;

    public int ExitCode => process.ExitCode;

    public string Output => output.ToString();

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts <c>dotnet {project}.dll --urls http://127.0.0.1:{port}</c> and waits for <c>/healthz</c>.</summary>
    public static async Task<ServiceProcess> StartAsync(string project, string workingDirectory, IReadOnlyDictionary<string, string> environment, int? port = null)
    {
        var p = port ?? FreePort();
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(RepoPaths.ServiceDll(project));
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add($"http://127.0.0.1:{p}");
        info.Environment["DOTNET_ENVIRONMENT"] = "Development";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }
        var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {project}.");
        var service = new ServiceProcess(process, p);
        process.OutputDataReceived += (_, e) => service.output.Append(e.Data);
        process.ErrorDataReceived += (_, e) => service.output.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await service.WaitHealthyAsync(TimeSpan.FromSeconds(30));
        }
        catch
        {
            // A service that never became healthy must not outlive the test.
            await service.DisposeAsync();
            throw;
        }
        return service;
    }

    public async Task WaitHealthyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"The service exited with {process.ExitCode}:\n{Output}");
            }
            try
            {
                if ((await http.GetAsync("/healthz")).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"The service did not become healthy in {timeout}:\n{Output}");
    }

    /// <summary>Sends a signal by name (TERM, KILL, STOP, CONT, ...) to the process.</summary>
    public void Signal(string name) => OsProcess.Signal(process.Id, name);

    public void Kill() => process.Kill(entireProcessTree: true);

    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await WaitForExitAsync(TimeSpan.FromSeconds(10));
        }
        process.Dispose();
    }
}
