using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Queue.Tests.Infrastructure;

/// <summary>
/// Debian's Chromium, headless, driven through the DevTools protocol over a WebSocket: navigate,
/// evaluate JavaScript in the page, take screenshots. Disposing ends the browser it started.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    private readonly string profile = Path.Combine(Path.GetTempPath(), "queue-chromium", Guid.NewGuid().ToString("N"));
    private readonly ClientWebSocket socket = new();
    private Process? process;
    private int nextId;

    public static async Task<HeadlessChromium> StartAsync()
    {
        var binary = OsProcess.Which("chromium") ?? throw new InvalidOperationException("chromium is not installed: run scripts/install-servers.sh.");
        var browser = new HeadlessChromium();
        var port = ServiceProcess.FreePort();
        var info = new ProcessStartInfo(binary) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,1000", $"--user-data-dir={browser.profile}",
            $"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", "about:blank",
        })
        {
            info.ArgumentList.Add(arg);
        }
        browser.process = Process.Start(info)!;
        browser.process.BeginErrorReadLine();
        browser.process.BeginOutputReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                var targets = await http.GetFromJsonAsync<JsonArray>($"http://127.0.0.1:{port}/json/list");
                var page = targets!.FirstOrDefault(t => (string?)t!["type"] == "page");
                if (page is not null)
                {
                    await browser.socket.ConnectAsync(new Uri((string)page["webSocketDebuggerUrl"]!), CancellationToken.None);
                    return browser;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
            {
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Chromium's DevTools endpoint did not come up.");
            }
            await Task.Delay(200);
        }
    }

    public async Task NavigateAsync(Uri url)
    {
        await SendAsync("Page.enable", new JsonObject());
        await SendAsync("Page.navigate", new JsonObject { ["url"] = url.ToString() });
    }

    /// <summary>Evaluates an expression in the page and returns its value (awaiting promises).</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression)
    {
        var result = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true });
        if (result["exceptionDetails"] is { } error)
        {
            throw new InvalidOperationException($"The page threw: {error.ToJsonString()}");
        }
        return result["result"]?["value"];
    }

    /// <summary>Evaluates <paramref name="expression"/> until it gives something other than null or false; fails the test past the timeout (20 s).</summary>
    public async Task<JsonNode?> WaitForAsync(string expression, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            JsonNode? value;
            try
            {
                value = await EvaluateAsync(expression);
            }
            catch (InvalidOperationException e) when (e.Message.Contains("navigated", StringComparison.Ordinal) || e.Message.Contains("context", StringComparison.OrdinalIgnoreCase))
            {
                value = null; // the page is still loading
            }
            if (value is not null && value.ToJsonString() is not ("false" or "null"))
            {
                return value;
            }
            Assert.True(DateTime.UtcNow < deadline, $"The page never satisfied: {expression}");
            await Task.Delay(200);
        }
    }

    public async Task<byte[]> ScreenshotAsync()
    {
        var result = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png", ["captureBeyondViewport"] = true });
        return Convert.FromBase64String((string)result["data"]!);
    }

    public async ValueTask DisposeAsync()
    {
        socket.Dispose();
        if (process is { HasExited: false })
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process?.Dispose();
        try
        {
            Directory.Delete(profile, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task<JsonNode> SendAsync(string method, JsonObject parameters)
    {
        var id = Interlocked.Increment(ref nextId);
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
        await socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var buffer = new byte[1 << 16];
        while (true)
        {
            using var text = new MemoryStream();
            WebSocketReceiveResult received;
            do
            {
                received = await socket.ReceiveAsync(buffer, timeout.Token);
                text.Write(buffer, 0, received.Count);
            }
            while (!received.EndOfMessage);
            var reply = JsonNode.Parse(text.ToArray())!;
            // Events (no id) and answers to other calls are skipped.
            if ((int?)reply["id"] == id)
            {
                return reply["error"] is { } error
                    ? throw new InvalidOperationException($"{method} failed: {error.ToJsonString()}")
                    : reply["result"] ?? new JsonObject();
            }
        }
    }
}
