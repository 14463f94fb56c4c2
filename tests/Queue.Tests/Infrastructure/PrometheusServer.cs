using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Queue.Tests.Infrastructure;

/// <summary>A real Prometheus (Debian's package) on 127.0.0.1 scraping the given targets every second.</summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-prometheus", Guid.NewGuid().ToString("N"));
    private readonly BoundedLog output = new(200_000);
    private readonly HttpClient http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private Process? process;

    public Uri BaseAddress { get; private set; } = null!;

    public static async Task<PrometheusServer> StartAsync(params Uri[] targets)
    {
        var server = new PrometheusServer();
        Directory.CreateDirectory(server.folder);
        var config = Path.Combine(server.folder, "prometheus.yml");
        var list = string.Join(", ", targets.Select(t => $"'{t.Authority}'"));
        await File.WriteAllTextAsync(config, $"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: queue\n    static_configs:\n      - targets: [{list}]\n");
        var port = ServiceProcess.FreePort();
        server.BaseAddress = new Uri($"http://127.0.0.1:{port}");
        var info = new ProcessStartInfo(OsProcess.Which("prometheus") ?? throw new InvalidOperationException("prometheus is not installed: run scripts/install-servers.sh."))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(server.folder, "tsdb")}", $"--web.listen-address=127.0.0.1:{port}" })
        {
            info.ArgumentList.Add(arg);
        }
        server.process = Process.Start(info)!;
        server.process.ErrorDataReceived += (_, e) => server.output.Append(e.Data);
        server.process.OutputDataReceived += (_, e) => server.output.Append(e.Data);
        server.process.BeginErrorReadLine();
        server.process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            try
            {
                if ((await server.http.GetAsync(new Uri(server.BaseAddress, "/-/ready"))).IsSuccessStatusCode)
                {
                    return server;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Prometheus did not become ready:\n{server.output}");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>Runs an instant query; returns each series' labels and value.</summary>
    public async Task<List<(Dictionary<string, string> Labels, double Value)>> QueryAsync(string query)
    {
        var json = await http.GetFromJsonAsync<JsonElement>(new Uri(BaseAddress, $"/api/v1/query?query={Uri.EscapeDataString(query)}"));
        var series = new List<(Dictionary<string, string>, double)>();
        foreach (var item in json.GetProperty("data").GetProperty("result").EnumerateArray())
        {
            var labels = item.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
            var value = double.Parse(item.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture);
            series.Add((labels, value));
        }
        return series;
    }

    public async ValueTask DisposeAsync()
    {
        http.Dispose();
        if (process is { HasExited: false })
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
        process?.Dispose();
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
